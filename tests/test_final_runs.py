"""The final job's trainings (finaljob/runs.py) without a search: the recipe choice reads
validation only, a training that did not learn is flagged, another run's checkpoints are taken
over only for the same training on the same rows, and Ctrl+C ends a batch at once. (Apart from
test_final.py and its module-wide final job, so that pytest-xdist runs the two side by side.)"""

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from tune_jobs.config import ConfigError, load_config

# Real trainings: the slow lane (`pytest -m slow`; all of it in CI).
pytestmark = pytest.mark.slow


def test_training_check_flags_a_run_that_did_not_learn() -> None:
    from tune_jobs.finaljob.runs import training_check

    assert training_check([{"loss": 1.7}, {"loss": 1.2}, {"loss": 0.9}]).trained
    stalled = training_check([{"loss": 1.73}, {"loss": 13.6}, {"loss": 1.85}])
    assert not stalled.trained and stalled.last_loss == 1.85


def test_the_recipe_choice_reads_validation_not_test(tmp_path, cache_dir) -> None:
    """A baseline's recipe is chosen on validation: a test split on which the other recipe
    scores perfectly (labelled with its own predictions) leaves the choice as it was."""
    from sklearn.metrics import f1_score

    from data_utils.augment import prepare_eval
    from tune_jobs.finaljob.batch import Batch
    from tune_jobs.finaljob.job import choose_recipes
    from tune_jobs.finaljob.recipes import recipes_for
    from tune_jobs.finaljob.runs import Bench, Job, Net, select_recipe
    from tune_jobs.trial.space import TrainParams

    cfg = load_config("ci.yaml", [f"data.cache_dir={cache_dir}"])
    params = TrainParams(image_size=32, batch_size=64, optimizer="sgd", lr=0.5,
                         weight_decay=1e-4, schedule="onecycle", label_smoothing=0.0,
                         augment_magnitude=0.1)
    name = "mobilenet_v3_small"
    net = Net(f"tv/{name}", 6)

    def choice(folder, test=None):
        bench = Bench(cfg, folder, epochs=2, device=torch.device("cpu"), progress=False)
        if test is not None:
            bench.data[32] = dataclasses.replace(bench.prepared(32), test=test)
        with Batch(bench, 4) as batch:
            ((_, trials),) = choose_recipes(batch, {name: net},
                                            {name: recipes_for(name, params)}, seed=1)
        return bench, trials, select_recipe(trials)

    bench, trials, picked = choice(tmp_path / "a")
    loser = next(t for t in trials if t is not picked)
    # the loser's model (its finished checkpoint: not trained again), labelling the test split
    model, _ = bench.run(Job(f"{name}-{loser.label}", net, TrainParams(**loser.params), 1,
                             "train"))
    data = bench.prepared(32)
    with torch.inference_mode():
        predicted = model.eval()(prepare_eval(torch.from_numpy(data.test.images.copy()))).argmax(1)
    rigged = dataclasses.replace(data.test, labels=predicted.numpy().astype(data.test.labels.dtype))
    winner, _ = bench.run(Job(f"{name}-{picked.label}", net, TrainParams(**picked.params), 1,
                              "train"))
    with torch.inference_mode():
        on_rigged = winner.eval()(prepare_eval(torch.from_numpy(data.test.images.copy()))).argmax(1)
    # the rigged test split would choose the loser (F1 1.0) over the winner
    assert f1_score(rigged.labels, on_rigged.numpy(), average="macro") < 1.0
    # the same trainings (their finished checkpoints, copied) judged with the rigged test
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _, again, picked_again = choice(tmp_path / "b", rigged)
    assert picked_again.recipe == picked.recipe
    assert [t.val_f1 for t in again] == [t.val_f1 for t in trials]


def test_reuse_from_takes_over_the_same_training_on_the_same_rows_only(tmp_path, cache_dir,
                                                                       caplog) -> None:
    """`--reuse-from`: another run's checkpoint of the same training is taken over (not
    trained again: its epoch timings come back as they were); on other rows it is trained
    again; a checkpoint from before digests is not reused but still resumes in its own
    folder, and is stamped so that it can be reused later."""
    from tune_jobs.finaljob.job import reuse_folder
    from tune_jobs.finaljob.runs import Bench, Job, Net
    from tune_jobs.trial.space import TrainParams

    caplog.set_level(logging.INFO, logger="tune_jobs.finaljob.runs")
    params = TrainParams(image_size=16, batch_size=64, optimizer="sgd", lr=0.05,
                         weight_decay=1e-4, schedule="cosine", label_smoothing=0.0,
                         augment_magnitude=0.0)
    job = Job("mnv3", Net("tv/mobilenet_v3_small", 6), params, 1, "train")
    same = load_config("ci.yaml", [f"data.cache_dir={cache_dir}"])
    other_rows = load_config("ci.yaml", [f"data.cache_dir={cache_dir}", "data.val_fraction=0.3"])

    def run(name: str, cfg=same, reuse: str | None = None):
        bench = Bench(cfg, tmp_path / name / "final", epochs=1, device=torch.device("cpu"),
                      progress=False, reuse=reuse_folder(reuse))
        caplog.clear()
        return bench.run(job)[1]

    first = run("a")
    (checkpoint,) = (tmp_path / "a" / "final").glob("checkpoint-*.pt")
    taken = run("b", reuse=str(tmp_path / "a"))
    assert "reused from" in caplog.text
    assert taken.f1 == first.f1 and taken.taken_over and not first.taken_over
    # its epochs as trained there (timings too), each marked with where
    assert taken.history == [{**h, "from": str(tmp_path / "a" / "final")}
                             for h in first.history]
    assert (tmp_path / "b" / "final" / checkpoint.name).is_file()

    elsewhere = run("c", other_rows, reuse=str(tmp_path / "a"))
    assert "not reused" in caplog.text and "other data" in caplog.text
    assert elsewhere.history != first.history  # trained: its own timings

    # a checkpoint written before digests were recorded
    state = torch.load(checkpoint, weights_only=False)
    del state["digest"]
    (tmp_path / "old" / "final").mkdir(parents=True)
    torch.save(state, tmp_path / "old" / "final" / checkpoint.name)
    fresh = run("d", reuse=str(tmp_path / "old"))
    assert "written before its data was recorded" in caplog.text
    assert fresh.history != first.history
    resumed = run("old")
    assert resumed.history == first.history and not resumed.taken_over
    assert torch.load(tmp_path / "old" / "final" / checkpoint.name,
                      weights_only=False)["digest"] == torch.load(checkpoint,
                                                                  weights_only=False)["digest"]
    # its own folder on other rows: trained again, with a warning
    again = run("old", other_rows)
    assert "on other data or settings; training again" in caplog.text
    assert again.history != first.history

    with pytest.raises(ConfigError, match=r"--reuse-from .*nowhere: no final-job checkpoints"):
        reuse_folder(str(tmp_path / "nowhere"))


def test_a_finished_training_whose_checkpoint_is_gone_comes_from_its_record(
        tmp_path, cache_dir, caplog) -> None:
    """A run folder lost with its machine, its trainings.jsonl put back: a finished training
    is taken from its line (its numbers and history, no weights, no line appended), not
    trained again; asked for its weights it is trained again from its seed, to the same
    F1. A line of other rows, or of other epochs, is not taken; a line from before tags (no
    tag, digest or history) is, by name, split, seed and epochs, with its verdict; a line cut
    off mid-write is skipped with a warning."""
    from tune_jobs.finaljob.batch import Batch, run_all
    from tune_jobs.finaljob.runs import TRAININGS, Bench, Job, Net
    from tune_jobs.trial.space import TrainParams

    caplog.set_level(logging.INFO, logger="tune_jobs.finaljob")
    params = TrainParams(image_size=16, batch_size=64, optimizer="sgd", lr=0.05,
                         weight_decay=1e-4, schedule="cosine", label_smoothing=0.0,
                         augment_magnitude=0.0)
    job = Job("mnv3", Net("tv/mobilenet_v3_small", 6), params, 1, "trainval")
    folder = tmp_path / "final"
    jsonl = folder / TRAININGS

    def run(j: Job = job, cfg_overrides=(), epochs: int = 1, at=folder, reuse=None):
        cfg = load_config("ci.yaml", [f"data.cache_dir={cache_dir}", *cfg_overrides])
        bench = Bench(cfg, at, epochs=epochs, device=torch.device("cpu"), progress=False,
                      reuse=reuse)
        caplog.clear()
        ((model, got),) = run_all(bench, [j])
        return model, got

    _, first = run()
    assert not first.from_record and first.tag and first.digest
    (checkpoint,) = folder.glob("checkpoint-*.pt")
    checkpoint.unlink()  # the machine is gone; trainings.jsonl was kept
    lines = jsonl.read_text()
    model, recorded = run()
    assert model is None and recorded.from_record and f"taken from {jsonl}" in caplog.text
    assert (recorded.f1, recorded.per_class_f1, recorded.history) == (
        first.f1, first.per_class_f1, first.history)
    assert recorded.training == first.training
    assert not list(folder.glob("checkpoint-*.pt")) and jsonl.read_text() == lines
    # a batch of two workers starts none for trainings that their lines stand in for
    cfg = load_config("ci.yaml", [f"data.cache_dir={cache_dir}"])
    with Batch(Bench(cfg, folder, epochs=1, device=torch.device("cpu"), progress=False,
                     workers=2), 2) as batch:
        assert [run.f1 for _, run in batch.results(batch.submit([job, job]))] == [first.f1] * 2
        assert batch.pool is None

    model, weighed = run(dataclasses.replace(job, from_record=False))
    assert isinstance(model, torch.nn.Module) and not weighed.from_record
    assert weighed.f1 == first.f1  # the same seed, data order and augmentation
    # that retrain stopped before its epoch ended: the line is taken, not the epoch repeated
    state = torch.load(checkpoint, weights_only=False)
    torch.save({**state, "epoch": 0, "history": []}, checkpoint)
    assert run()[0] is None and checkpoint.is_file()
    checkpoint.unlink()

    # other rows, or other epochs: trained, not taken
    assert not run(cfg_overrides=["data.val_fraction=0.3"])[1].from_record
    assert not run(epochs=2)[1].from_record
    for stale in folder.glob("checkpoint-*.pt"):
        stale.unlink()

    # a line from before tags, and a line cut off by a kill mid-write
    line = json.loads(lines.splitlines()[0])
    legacy = {k: v for k, v in line.items() if k not in ("tag", "digest", "history")}
    jsonl.write_text(json.dumps(legacy) + "\n" + lines.splitlines()[0][:40] + "\n")
    model, old = run()
    assert model is None and old.from_record and old.f1 == first.f1 and old.history == []
    assert old.training.trained == first.training.trained
    assert "1 line(s) that are not a finished training skipped" in caplog.text
    # ... written again with the tag and digest it was matched by, once: another run folder
    # (`--reuse-from`, under another job name) takes it over by what it is
    retagged = json.loads(jsonl.read_text().splitlines()[-1])
    assert (retagged["tag"], retagged["digest"], retagged["f1"]) == (first.tag, first.digest,
                                                                      first.f1)
    run()
    assert len(jsonl.read_text().splitlines()) == 3
    model, there = run(dataclasses.replace(job, name="mnv3-reused"), at=tmp_path / "other",
                       reuse=folder)
    assert model is None and there.from_record and there.f1 == first.f1 and there.taken_over
    assert not old.taken_over and not recorded.taken_over


def test_a_batch_trains_what_is_submitted_later_beside_what_still_runs(tmp_path,
                                                                      cache_dir) -> None:
    """Trainings submitted once others' results are read (a baseline's seeds after its recipe
    trials) go to the same workers while a longer training still runs: no worker waits at the
    end of a group. A group is given back as soon as it is done, before a group asked first
    that still trains. Results come back in the order asked; every training is logged once."""
    from tune_jobs.finaljob.batch import Batch
    from tune_jobs.finaljob.runs import TRAININGS, Bench, Job, Net
    from tune_jobs.trial.space import TrainParams

    cfg = load_config("ci.yaml", [f"data.cache_dir={cache_dir}", "final.compile=false"])
    bench = Bench(cfg, tmp_path, epochs=1, device=torch.device("cpu"), progress=False,
                  workers=2)

    def job(name: str, size: int) -> Job:
        params = TrainParams(image_size=size, batch_size=64, optimizer="sgd", lr=0.05,
                             weight_decay=1e-4, schedule="cosine", label_smoothing=0.0,
                             augment_magnitude=0.0)
        return Job(name, Net("tv/mobilenet_v3_small", 6), params, 1, "train")

    with Batch(bench, 3) as batch:
        short, long = batch.submit([job("short", 16), job("long", 160)])  # 100x the pixels
        groups = batch.as_done({"long": [long], "short": [short]})
        first, ((_, short_run),) = next(groups)
        assert first == "short" and not long.done()
        (later,) = batch.submit([job("later", 16)])
        ((model, run),) = batch.results([later])
        assert not long.done(), "the later training waited for the long one"
        assert [key for key, _ in groups] == ["long"]
        out = batch.results([long, short])
    assert isinstance(model, torch.nn.Module) and run.split == "train"
    assert [r.history for _, r in out] == [bench.finished[2].history,
                                           bench.finished[0].history]
    assert short_run.history == bench.finished[0].history
    assert len(bench.finished) == 3
    # each finished training on its own line of trainings.jsonl, in the order it finished
    lines = [json.loads(x) for x in (tmp_path / TRAININGS).read_text().splitlines()]
    assert [(x["name"], x["f1"], x["epochs"]) for x in lines] == [
        (n, r.f1, 1) for n, r in zip(["short", "later", "long"], bench.finished, strict=True)]


CTRL_C_BATCH = """
import sys, torch
from pathlib import Path
from tune_jobs.config import load_config
from tune_jobs.finaljob.batch import run_all
from tune_jobs.finaljob.runs import Bench, Job, Net
from tune_jobs.trial.space import TrainParams

# eager: 200 epochs would compile (final.compile: auto), a minute of a test about Ctrl+C
cfg = load_config("ci.yaml", [f"data.cache_dir={sys.argv[2]}", "final.compile=false"])
params = TrainParams(image_size=32, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=1e-4,
                     schedule="cosine", label_smoothing=0.0, augment_magnitude=0.0)
bench = Bench(cfg, Path(sys.argv[1]), epochs=200, device=torch.device("cpu"), progress=False,
              workers=2)
run_all(bench, [Job(f"job{i}", Net("tv/shufflenet_v2_x0_5", 6), params, i, "train")
                for i in range(4)])
"""


@pytest.mark.parametrize(("to", "sig", "raised"), [
    ("group", signal.SIGINT, "KeyboardInterrupt"), ("parent", signal.SIGINT, "KeyboardInterrupt"),
    ("parent", signal.SIGTERM, "Stopped: stopped by signal 15")])
def test_ctrl_c_ends_a_batch_of_trainings_now_and_starts_no_queued_one(tmp_path, cache_dir,
                                                                       to, sig, raised) -> None:
    """SIGINT to the terminal's process group (Ctrl+C) or to the final job alone (`kill -INT`),
    or SIGTERM to it alone (`kill`, a batch system's stop) mid-batch: the job ends within
    seconds, its pool's workers with it (a parent killed alone used to leave them training on),
    and the trainings still queued never start (the pool's exit used to wait for all of them,
    hours in a night run)."""
    folder, log = tmp_path / "final", tmp_path / "stderr.txt"
    # stderr to a file, not a pipe: a worker that outlived the job would hold a pipe open
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", CTRL_C_BATCH, str(folder), str(cache_dir)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(list(folder.glob("checkpoint-*.pt"))) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert len(list(folder.glob("checkpoint-*.pt"))) == 2, "no two trainings started"
        if to == "group":
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the batch went on after the signal")
        deadline = time.monotonic() + 20  # multiprocessing's resource tracker goes last
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"a process of the job's session outlived it: {log.read_text()[-2000:]}")
    finally:  # nothing of a failed run trains on behind the tests
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert raised in log.read_text(), log.read_text()[-3000:]
    started = sorted(p.name.split("-")[1] for p in folder.glob("checkpoint-*.pt"))
    assert started == ["job0", "job1"], started
