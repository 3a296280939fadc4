import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_utils.coco import convert, get_args_parser, load_coco, main, plan_crops
from data_utils.folder import scan_folder
from data_utils.mapping import load_mapping
from data_utils.skips import DataError

CLASSES = ("Metal", "Paper", "Paperpack", "Plastic", "Plasticbag", "Styrofoam")


@pytest.fixture(scope="module")
def taco(taco_file) -> dict:
    return load_coco(taco_file)


def test_default_mapping_resolves_the_tricky_taco_categories() -> None:
    m = load_mapping()
    assert m.classes == CLASSES
    cases = {
        ("Glass bottle", "Bottle"): None,  # a name rule beats the supercategory
        ("Clear plastic bottle", "Bottle"): "Plastic",
        ("Foam food container", "Plastic container"): "Styrofoam",
        ("Foam cup", "Cup"): "Styrofoam",
        ("Paper cup", "Cup"): "Paper",
        ("Glass cup", "Cup"): None,
        ("Aerosol", "Can"): "Metal",
        ("Metal bottle cap", "Bottle cap"): "Metal",
        ("Plastic bottle cap", "Bottle cap"): "Plastic",
        ("Plastic glooves", "Plastic glooves"): "Plasticbag",
        ("Toilet tube", "Carton"): "Paperpack",
        ("Cigarette", "Cigarette"): None,
        ("Plastified paper bag", "Paper bag"): "Paper",
        ("PLASTIC STRAW", "straw"): "Plastic",  # case-insensitive
    }
    for (name, sup), expected in cases.items():
        assert m.resolve(name, sup)[0] == expected, (name, sup)
    assert m.resolve("Glass bottle", "Bottle")[1] == "dropped by mapping (Glass bottle)"
    assert m.resolve("Spaceship", "Vehicle")[1] == "unmapped category (Spaceship)"


def test_plan_accounts_for_every_box_of_the_real_file(taco, tmp_path) -> None:
    jobs, skipped = plan_crops(taco, load_mapping(), tmp_path, min_size=1)
    planned = sum(len(j.boxes) for j in jobs)
    assert planned + skipped.total == len(taco["annotations"]) == 4784
    # Counted from the file's supercategory table (data README): every mapped supercategory
    # contributes, e.g. Plastic bag & wrapper (850) + Plastic glooves all go to Plasticbag.
    per_class = Counter(b.cls for j in jobs for b in j.boxes)
    assert per_class["Plasticbag"] >= 850
    assert set(per_class) == set(CLASSES)
    dropped = sum(n for r, n in skipped.counts.items() if r.startswith("dropped by mapping"))
    assert dropped >= 667 + 517 + 138  # Cigarette, Unlabeled litter, Broken glass at least


def _synthesize_photos(coco: dict, root: Path, image_ids: list[int]) -> None:
    """Stand-in photos at each declared width x height (pixels do not matter, sizes do)."""
    for image in coco["images"]:
        if image["id"] in image_ids:
            path = root / image["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (image["width"], image["height"]), (90, 120, 60)).save(
                path, quality=30)


def test_converter_on_real_annotations_crops_exactly_the_mapped_boxes(taco_file, taco,
                                                                     tmp_path) -> None:
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice([i["id"] for i in taco["images"]], 25, replace=False).tolist())
    _synthesize_photos(taco, tmp_path / "photos", sample)
    mapping = load_mapping()
    # Expected, straight from the file: boxes of the sampled photos whose category maps.
    cats = {c["id"]: c for c in taco["categories"]}
    expected: Counter = Counter()
    for ann in taco["annotations"]:
        cat = cats[ann["category_id"]]
        cls = mapping.resolve(cat["name"], cat["supercategory"])[0]
        if ann["image_id"] in sample and cls and min(ann["bbox"][2:]) >= 1:
            expected[cls] += 1
    result = convert(taco_file, tmp_path / "photos", tmp_path / "crops", mapping, min_size=1,
                     workers=2, progress=False)
    assert result.counts == expected
    assert sum(result.counts.values()) + result.skipped.total == len(taco["annotations"])
    assert result.skipped.counts.get("box outside the image", 0) == 0
    # every crop is a real JPEG on disk, in its class folder, listed once in the manifest
    index = scan_folder(tmp_path / "crops")
    on_disk = Counter(index.classes[label] for label in index.labels)
    assert on_disk == expected
    rows = result.manifest.read_text().splitlines()
    assert len(rows) == 1 + sum(expected.values())
    assert rows[0] == "crop_file,class,source_image,annotation_id,x,y,w,h"


def test_rerun_is_idempotent_and_removes_stale_crops(taco_file, taco, tmp_path) -> None:
    sample = [taco["images"][0]["id"], taco["images"][1]["id"]]
    _synthesize_photos(taco, tmp_path / "photos", sample)
    first = convert(taco_file, tmp_path / "photos", tmp_path / "out", min_size=1, progress=False)
    crops = sorted((tmp_path / "out").rglob("*.jpg"))
    stamps = [p.stat().st_mtime_ns for p in crops]
    manifest = first.manifest.read_text()
    second = convert(taco_file, tmp_path / "photos", tmp_path / "out", min_size=1, progress=False)
    assert second.manifest.read_text() == manifest
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "out").rglob("*.jpg"))] == stamps
    # a stricter mapping run in the same folder leaves no crop of the old run behind
    strict = tmp_path / "strict.yaml"
    strict.write_text("classes:\n  Metal: {supercategories: [Can]}\n"
                      "  Paper: {supercategories: [Paper]}\n")
    third = convert(taco_file, tmp_path / "photos", tmp_path / "out", load_mapping(strict),
                    min_size=1, progress=False)
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == sum(third.counts.values())


def _mini_coco(tmp_path: Path, annotations: list[dict], images=None) -> Path:
    images = images or [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}]
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 5, "name": "Drink can", "supercategory": "Can"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    (tmp_path / "img").mkdir(exist_ok=True)
    return path


def test_bad_boxes_and_references_are_counted_by_reason(tmp_path) -> None:
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 30, 20]},  # good
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [10, 10, -5, 20]},
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [10, 10, 0, 20]},
        {"id": 4, "image_id": 1, "category_id": 5, "bbox": [500, 10, 10, 10]},
        {"id": 5, "image_id": 1, "category_id": 99, "bbox": [10, 10, 10, 10]},
        {"id": 6, "image_id": 7, "category_id": 5, "bbox": [10, 10, 10, 10]},
        {"id": 7, "image_id": 1, "category_id": 5, "bbox": [10, 10, 3, 3]},
        {"id": 8, "image_id": 1, "category_id": 5, "bbox": "oops"},
        {"id": 9, "image_id": 1, "category_id": 5, "bbox": [90, 70, 40, 40]},  # partly outside
    ]
    path = _mini_coco(tmp_path, anns)
    Image.new("RGB", (100, 80)).save(tmp_path / "img" / "a.jpg")
    result = convert(path, tmp_path / "img", tmp_path / "out", min_size=4, progress=False)
    assert result.counts == Counter({"Metal": 2})
    assert result.skipped.counts == Counter({
        "box with zero or negative size": 2,
        "box outside the image": 1,
        "unknown category id 99": 1,
        "unknown image id 7": 1,
        "box smaller than --min-size 4 px": 1,
        "malformed annotation (needs id and bbox [x, y, w, h])": 1,
    })
    clipped = Image.open(tmp_path / "out" / "Metal" / "a_9.jpg")
    assert clipped.size == (10, 10)  # clipped to the photo


def test_missing_and_unreadable_photos_skip_their_boxes(tmp_path) -> None:
    images = [{"id": 1, "file_name": "gone.jpg", "width": 50, "height": 50},
              {"id": 2, "file_name": "broken.jpg", "width": 50, "height": 50}]
    anns = [{"id": i, "image_id": 1 + i % 2, "category_id": 5, "bbox": [1, 1, 20, 20]}
            for i in range(4)]
    path = _mini_coco(tmp_path, anns, images)
    (tmp_path / "img" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    result = convert(path, tmp_path / "img", tmp_path / "out", progress=False)
    assert sum(result.counts.values()) == 0
    assert result.skipped.counts["missing image file (gone.jpg)"] == 2
    assert sum(n for r, n in result.skipped.counts.items()
               if r.startswith("unreadable image")) == 2


def test_not_json_and_missing_keys_are_clear_errors(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad.json: not a JSON file"):
        load_coco(bad)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match=r"missing or not a list: categories"):
        load_coco(partial)
    args = get_args_parser().parse_args([str(bad), "--images", str(tmp_path), "--out",
                                         str(tmp_path / "o")])
    assert main(args) == 2
    assert "not a JSON file" in capsys.readouterr().err


def test_mapping_file_errors_name_the_file_and_rule(tmp_path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("classes:\n  A: {names: [Foam cup]}\n  B: {names: [foam cup]}\n")
    with pytest.raises(DataError, match=r"twice.yaml: names rule 'foam cup' appears in both"):
        load_mapping(twice)
    typo = tmp_path / "typo.yaml"
    typo.write_text("classes:\n  A: {name: [x]}\n  B: {names: [y]}\n")
    with pytest.raises(DataError, match=r"typo.yaml: classes.A must be a mapping"):
        load_mapping(typo)
    with pytest.raises(DataError, match="no such class mapping file"):
        load_mapping(tmp_path / "nope.yaml")
