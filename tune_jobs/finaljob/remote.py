"""The final job on a cluster node with a GPU: the driver (on the head, next to the study
database) ships an in-memory copy of the study to a Ray task that requests the GPU; the task
retrains, benchmarks and exports there and sends the artifacts back, which the driver writes
to OUTPUT/final as the local job would. The database is never reached from the GPU node."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import optuna

from tune_jobs.finaljob.options import FinalOptions
from tune_jobs.finaljob.results import FinalResult

log = logging.getLogger(__name__)
KEEP_ON_NODE = ("checkpoint",)  # per-epoch resume state: only useful where it was written


def in_memory_copy(study: optuna.Study) -> optuna.Study:
    """The study with its trials and user attributes, picklable (no database connection);
    what `optuna.copy_study` does, through the public API of the study in hand."""
    copy = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                               study_name=study.study_name, directions=study.directions)
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, value)
    copy.add_trials(study.get_trials(deepcopy=False))
    return copy


def _final_task(study: optuna.Study, opts: FinalOptions) -> tuple[FinalResult,
                                                                   dict[str, bytes]]:
    import tempfile

    import ray

    from tune_jobs.finaljob.job import run_final

    with tempfile.TemporaryDirectory(prefix="litesearch-final-") as tmp:
        metrics = dataclasses.replace(run_final(study, Path(tmp), opts), ran_on={
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]})
        final = Path(tmp) / "final"
        files = {str(p.relative_to(final)): p.read_bytes() for p in final.rglob("*")
                 if p.is_file() and not p.name.startswith(KEEP_ON_NODE)}
    return metrics, files


def run_final_on_cluster(study: optuna.Study, output: Path, opts: FinalOptions,
                         gpus: float) -> FinalResult:
    """`run_final` as a Ray task holding `gpus` GPUs (retried on another node if its node is
    lost); returns its metrics and writes its artifacts under `output/final`."""
    import json

    import ray

    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=2)(_final_task)
    log.info("final job: a Ray task with %s GPU(s)", gpus)
    # the task holds one CPU: its trainings run one after another (on the GPU, as they would)
    metrics, files = ray.get(task.remote(in_memory_copy(study),
                                         dataclasses.replace(opts, workers=1)))
    final = output / "final"
    for rel, data in files.items():
        path = final / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (final / "metrics.json").write_text(json.dumps(metrics.to_json(), indent=2))
    return metrics
