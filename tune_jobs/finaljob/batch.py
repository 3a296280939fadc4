"""Many trainings of the final job at once. On a CPU they go to a pool of processes with one
thread each (small nets use a second core poorly inside one training and fully as a second
training); trainings that wait for others' results are submitted to the same pool once those
results are read, so no worker idles while work is queued. Ctrl+C or SIGTERM (`kill`, a batch
system's stop) ends the pool at once, its workers with it, and every finished training is
logged with the time the batch has left and recorded in the final job's trainings.jsonl
(unless it came from there). A training that came from trainings.jsonl has no weights: its
model is None.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

import torch
from torch import nn

from tune_jobs.finaljob.runs import Bench, Job, Run, record

log = logging.getLogger(__name__)
K = TypeVar("K")  # what names a group of trainings (`Batch.as_done`)


def run_all(bench: Bench, jobs: list[Job]) -> list[tuple[nn.Module | None, Run]]:
    """Every job, in order; on a CPU up to `bench.workers` at once, one thread each."""
    with Batch(bench, len(jobs)) as batch:
        return batch.results(batch.submit(jobs))


class Batch:
    """Trainings run on one pool of worker processes (a CPU with `workers` > 1) or one after
    another as they are submitted (one worker, a GPU). Trainings that wait for others' results
    (a baseline's seeds wait for its recipe trials) are submitted to the same pool once those
    results are read, so no worker idles at the end of one group while another is queued.
    Leaving the `with` block on an exception (Ctrl+C, a failed training) ends the pool at once;
    while a pool trains, SIGTERM raises `Stopped` (a KeyboardInterrupt) in the main thread, so
    `kill` ends it as Ctrl+C does: a killed parent alone would leave its workers training on,
    writing the checkpoints a rerun resumes from (and a backgrounded job ignores SIGINT)."""

    def __init__(self, bench: Bench, total: int) -> None:
        self.bench = bench
        self.workers = min(bench.workers, total) if bench.device.type == "cpu" else 1
        self.progress = BatchProgress(total, bench.epochs, self.workers)
        self.pool: ProcessPoolExecutor | None = None  # started by the first job that trains
        self.on_term = None  # SIGTERM's handler before this batch's, restored at its end
        self.jobs: dict[Future, Job] = {}  # every training submitted to the pool
        self.pending: set[Future] = set()  # of those, the ones not yet logged as finished

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        if self.pool is None:
            return
        if self.on_term is not None:
            signal.signal(signal.SIGTERM, self.on_term)
        if kind is not None:
            _stop(self.pool)
        else:
            self.pool.shutdown()

    def submit(self, jobs: list[Job]) -> list[Future]:
        """Queue `jobs`, the biggest input first (a long training last would leave the other
        workers idle while it finishes); their futures in the jobs' order."""
        self.progress.submitted(jobs)
        for size in {job.params.image_size for job in jobs}:
            self.bench.prepared(size)  # decode (and cache) once here, not in every worker
        futures: dict[int, Future] = {}
        for i in sorted(range(len(jobs)), key=lambda i: -jobs[i].params.image_size):
            futures[i] = self._start(jobs[i])
        return [futures[i] for i in range(len(jobs))]

    def _start(self, job: Job) -> Future:
        if self.workers == 1:
            result = self.bench.run(job)
        else:
            # a training trainings.jsonl records is read here: no worker starts for it (a job
            # restarted after its trainings finished starts none)
            recorded = self.bench.recorded(job)
            if recorded is None:
                future = self._pool().submit(_run_in_worker, job)
                self.jobs[future] = job
                self.pending.add(future)
                return future
            result = (None, recorded)
        ran: Future = Future()
        ran.set_result(result)
        self._finished(job, ran)
        return ran

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            # (records=[]: what trainings.jsonl records was taken here, in `_start`)
            worker = dataclasses.replace(self.bench, progress=False, workers=1, data={},
                                         finished=[], records=[])
            # spawn: a fork of a process that already ran torch can deadlock in its thread pools
            self.pool = ProcessPoolExecutor(self.workers,
                                            mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker, initargs=(worker,))
            if threading.current_thread() is threading.main_thread():
                self.on_term = signal.signal(signal.SIGTERM, _raise_stopped)
        return self.pool

    def results(self, futures: list[Future]) -> list[tuple[nn.Module | None, Run]]:
        """Wait for `futures` (logging every training of the batch that finishes meanwhile);
        each training's model (None: taken from trainings.jsonl) and run, in the futures'
        order."""
        while self.pending.intersection(futures):
            self._log_next()
        out = []
        for future in futures:
            model, run = future.result()
            if isinstance(model, dict):  # a worker's weights: the net rebuilt here
                state, model = model, self.jobs[future].net()
                model.load_state_dict(state)
            out.append((None if model is None else model.to(self.bench.device), run))
        return out

    def as_done(self, groups: dict[K, list[Future]]
                ) -> Iterator[tuple[K, list[tuple[nn.Module | None, Run]]]]:
        """Each group's `results` as soon as all its trainings are done, the first done first
        (not in the order asked): what waits for a group (a model's seeds for its recipe
        trials) can be submitted while another group still trains."""
        left = dict(groups)
        while left:
            done = [key for key, futures in left.items() if not self.pending.intersection(futures)]
            if not done:
                self._log_next()
            for key in done:
                yield key, self.results(left.pop(key))

    def _log_next(self) -> None:
        """Wait for the next pending training(s) to finish and log them, in submission order."""
        finished, _ = wait(self.pending, return_when=FIRST_COMPLETED)
        for future in [f for f in self.jobs if f in finished]:
            self.pending.remove(future)
            self._finished(self.jobs[future], future)

    def _finished(self, job: Job, future: Future) -> None:
        run = future.result()[1]  # a failed training raises here
        self.progress.done(job, run)
        self.bench.finished.append(run)
        if not run.from_record:
            record(self.bench.folder, job.name, run)
        elif not run.history:  # a line from before tags: written again with them
            self.bench.record_files()[0].retag(job, run)


class BatchProgress:
    """Logs each finished training of a batch with the time the batch has left. The estimate
    is each waiting training's own cost (the mean epoch seconds of the finished trainings of
    the same name, else of all, times its epochs) over the `workers` that share them, the
    trainings not yet submitted counted at the mean of all: a finished training resumed or
    taken over from a checkpoint costs this job nothing, but its recorded epochs still say
    what a training of its kind costs."""

    def __init__(self, total: int, epochs: int, workers: int) -> None:
        self.total, self.epochs, self.workers = total, epochs, max(1, workers)
        self.waiting: list[Job] = []  # submitted, not finished
        self.finished, self.started = 0, time.monotonic()
        self.seconds: dict[str, list[float]] = {}  # per job name: each epoch's seconds

    def submitted(self, jobs: list[Job]) -> None:
        self.waiting += jobs
        # more than announced (runs trained again for their weights): count them too
        self.total = max(self.total, self.finished + len(self.waiting))

    def done(self, job: Job, run: Run) -> None:
        self.waiting.remove(job)
        self.finished += 1
        self.seconds.setdefault(job.name, []).extend(h["seconds"] for h in run.history)
        spent, left = time.monotonic() - self.started, self.left()
        log.info("training %d of %d done%s: %s seed %d, macro-F1 %.4f on %s; %s spent, %s "
                 "left in this batch", self.finished, self.total,
                 _how(run),
                 job.name, job.seed, run.f1, "validation" if job.split == "train" else "test",
                 _minutes(spent), "no time" if left == 0 else "an unknown time"
                 if left is None else f"about {_minutes(left)}")

    def left(self) -> float | None:
        """Seconds of training still waiting or still to be submitted, over the workers;
        None while no finished training has said what an epoch costs (only lines of
        trainings.jsonl from before epochs were recorded)."""
        if self.finished >= self.total and not self.waiting:
            return 0.0
        every = [s for per_name in self.seconds.values() for s in per_name]
        if not every:
            return None
        unsubmitted = self.total - self.finished - len(self.waiting)
        cost = (sum(_mean(self.seconds.get(job.name) or every) for job in self.waiting)
                + unsubmitted * _mean(every))
        return cost * self.epochs / self.workers


def _how(run: Run) -> str:
    """Where a finished training came from, for its log line ('' when trained here)."""
    if run.taken_over:
        return f" (taken over from {run.history[0]['from'] if run.history else 'another run'})"
    return " (earlier, as trainings.jsonl records it)" if run.from_record else ""


def _mean(seconds: list[float]) -> float:
    return sum(seconds) / len(seconds)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class Stopped(KeyboardInterrupt):
    """SIGTERM while a batch trains: the batch ends as on Ctrl+C."""

    signum = signal.SIGTERM


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(f"stopped by signal {signum}")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Ctrl+C or a failed training: end the batch now. Leaving the pool's `with` would wait
    for every queued training (hours), and a worker that got the terminal's SIGINT abandons
    its training and takes the next one. Ending the workers loses at most the epoch each was
    in: checkpoints are replaced atomically per epoch, and the rerun resumes from them."""
    processes = list((pool._processes or {}).values())  # no public way before Python 3.14
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=30)


_WORKER: Bench | None = None


def _start_worker(bench: Bench) -> None:
    global _WORKER
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("data_utils").setLevel(logging.WARNING)  # the parent logged it
    _WORKER = bench


def _run_in_worker(job: Job) -> tuple[dict | None, Run]:
    assert _WORKER is not None
    model, run = _WORKER.run(job)
    return None if model is None else {k: v.cpu() for k, v in model.state_dict().items()}, run


__all__ = ["Batch", "BatchProgress", "Stopped", "run_all"]
