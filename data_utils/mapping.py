"""Class mapping: dataset categories (name, supercategory) -> task classes, from YAML.

A name rule beats a supercategory rule; matching is case-insensitive; a category no rule
names is dropped and counted as unmapped. The default maps TACO to the six recycling classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from configs import config_dir
from data_utils.skips import DataError

DEFAULT_MAPPING = config_dir() / "taco_classes.yaml"
_RULE_KEYS = {"names", "supercategories"}


@dataclass(frozen=True)
class ClassMapping:
    classes: tuple[str, ...]
    names: dict[str, str | None]  # lower-cased category name -> class (None: drop)
    supercategories: dict[str, str | None]

    def resolve(self, name: str, supercategory: str = "") -> tuple[str | None, str]:
        """(class, "") for a mapped category, else (None, why it is dropped)."""
        for table, key in ((self.names, name), (self.supercategories, supercategory)):
            if key.lower() in table:
                target = table[key.lower()]
                return (target, "") if target else (None, f"dropped by mapping ({name})")
        return None, f"unmapped category ({name})"


def _rules(block: object, where: str, source: Path) -> dict[str, list[str]]:
    if block is None:
        return {}
    if not isinstance(block, dict) or set(block) - _RULE_KEYS:
        raise DataError(f"{source}: {where} must be a mapping with keys names and/or "
                        f"supercategories, got {block!r}")
    rules = {}
    for key, values in block.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(f"{source}: {where}.{key} must be a list of category names")
        rules[key] = values
    return rules


def load_mapping(path: str | Path | None = None) -> ClassMapping:
    source = Path(path) if path else DEFAULT_MAPPING
    try:
        data = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise DataError(f"{source}: no such class mapping file") from None
    except yaml.YAMLError as err:
        raise DataError(f"{source}: not valid YAML ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise DataError(f"{source}: needs a 'classes' mapping of class -> rules "
                        "(see configs/taco_classes.yaml)")
    unknown = set(data) - {"classes", "drop"}
    if unknown:
        raise DataError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; "
                        "expected classes and drop")
    tables: dict[str, dict[str, str | None]] = {"names": {}, "supercategories": {}}
    owners: dict[tuple[str, str], str] = {}
    targets = [(str(c), rules, f"classes.{c}") for c, rules in data["classes"].items()]
    targets.append((None, data.get("drop"), "drop"))
    for target, block, where in targets:
        for key, values in _rules(block, where, source).items():
            for value in values:
                if (key, value.lower()) in owners:
                    raise DataError(f"{source}: {key} rule {value!r} appears in both "
                                    f"{owners[key, value.lower()]} and {where}; keep one")
                owners[key, value.lower()] = where
                tables[key][value.lower()] = target
    if len(data["classes"]) < 2:
        raise DataError(f"{source}: map to at least two classes")
    return ClassMapping(tuple(str(c) for c in data["classes"]), tables["names"],
                        tables["supercategories"])
