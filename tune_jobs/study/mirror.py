"""The study mirror: every trial lands in the Optuna study in one honest shape, whichever
searcher drew it.

- state: COMPLETE only when trained to the full epoch budget (under PASHA: the budget the
  scheduler gave it then); PRUNED when ASHA stopped it or it was over budget; FAIL (with
  the reason) when it diverged, ran out of memory, raised, or its worker died;
- intermediate values: every reported score, including the one that made ASHA stop it;
- user attributes: outcome, reason, spec (YAML), last metrics, epochs, params, MACs, latency
  ratio, node, trial folder (checkpoints), wall time, and the learning curve (`curve`: per
  trained epoch, [epoch, f1, val_loss, accuracy, score, loss, lr]).

Out of the box OptunaSearch tells an ASHA-stopped trial COMPLETE with its short-budget value
and drops the stopping result; `MirroredOptunaSearch` fixes both. Other searchers (hyperopt)
are recorded by the `StudyRecorder` callback with the same `record_for`.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tune_jobs.config import SpaceConfig
from tune_jobs.internals import (
    ask_with_attrs,
    attach_trial,
    searcher_finished,
    searcher_study,
    searcher_trials,
    storage_id,
)
from tune_jobs.outcome import Outcome, budget_of, epochs_done, outcome_of, trial_state
from tune_jobs.study.trials import REPORTED, Attr, StudyTrial
from tune_jobs.study.writes import DB_DOWN, Write, WriteQueue, register
from tune_jobs.trial.data import flatten
from tune_jobs.trial.report import CURVE_METRICS
from tune_jobs.trial.space import candidate_from_config, optuna_distributions

log = logging.getLogger(__name__)

# OptunaSearch warns when the define-by-run space takes over a second, taking it for training
# done in the wrong place; here it is the sampler's own model, fitted at the trial's first draw
# (GPSampler: 1-2 s per trial), on every trial: not news for the console.
warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` "
                        "argument took", category=UserWarning)

STEP = "training_iteration"


@dataclass
class TrialRecord:
    state: TrialState
    values: list[float] | None
    user_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordContext:
    """What the mirror needs to judge and describe a trial."""

    metrics: tuple[str, ...]  # the study's objective(s), e.g. ("score",) or ("f1", "latency_ratio")
    max_epochs: int
    space: SpaceConfig | None  # None: trials carry no spec to rebuild (benchmarks)
    num_classes: int


class CurveLog:
    """Collects `[epoch, *CURVE_METRICS]` per trained epoch of each trial (a
    retried epoch overwrites its first report)."""

    def __init__(self) -> None:
        self.points: dict[str, dict[int, list[float | None]]] = defaultdict(dict)

    def add(self, trial_id: str, result: dict | None) -> None:
        if outcome_of(result) != Outcome.TRAINED or epochs_done(result) < 1:
            return
        self.points[trial_id][epochs_done(result)] = [_clean(result.get(m))
                                                      for m in CURVE_METRICS]

    def pop(self, trial_id: str) -> list[list]:
        points = self.points.pop(trial_id, {})
        return [[epoch, *values] for epoch, values in sorted(points.items())]


def _config_of(result: dict) -> dict | None:
    if isinstance(result.get("config"), dict):
        return result["config"]
    prefix = "config/"  # a flattened result
    flat = {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}
    return flat or None


def _clean(value: Any) -> Any:
    """JSON-safe attribute values (Optuna stores user attributes as JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def record_for(last: dict | None, error: bool, ctx: RecordContext) -> TrialRecord:
    """The study's record of a trial from its last result (`error`: its worker died)."""
    last = last or {}
    attrs: dict[str, Any] = {k: _clean(last[k]) for k in REPORTED if k in last}
    done = attrs[Attr.EPOCHS_DONE] = epochs_done(last)
    config = _config_of(last)
    if config and ctx.space is not None:
        try:
            attrs[Attr.SPEC] = candidate_from_config(config, ctx.space, ctx.num_classes
                                                     ).spec.to_yaml()
        except Exception as err:  # a config the space cannot rebuild is still recorded
            attrs[Attr.SPEC_ERROR] = str(err)
    outcome = outcome_of(last, error)
    state = trial_state(outcome, done, budget_of(last, ctx.max_epochs))
    values = ([float(last[m]) for m in ctx.metrics] if all(m in last for m in ctx.metrics)
              else None)
    reason = str(last.get("reason", ""))
    if outcome == Outcome.WORKER_LOST:
        reason = ("the trial's worker died (node lost or process killed) after "
                  f"{done} epoch(s); Tune's retries were used up")
    elif state == TrialState.COMPLETE and values is None:
        state, reason = TrialState.PRUNED, f"the last result lacks {', '.join(ctx.metrics)}"
    elif state == TrialState.PRUNED and outcome == Outcome.TRAINED:
        outcome = Outcome.STOPPED_EARLY
        reason = f"stopped by the scheduler after {done} epoch(s)"
    elif outcome == Outcome.UNKNOWN:
        reason = reason or "the trial's last result states no outcome"
    attrs[Attr.OUTCOME], attrs[Attr.REASON] = outcome.value, reason
    if state == TrialState.FAIL:
        if last.get("traceback"):
            attrs[Attr.TRACEBACK] = str(last["traceback"])
        values = None
    return TrialRecord(state, values, attrs)


class MirroredOptunaSearch(OptunaSearch):
    """OptunaSearch whose study tells the truth (see the module doc).

    Each Optuna trial is tagged with the run it belongs to. A driver killed between asking
    Optuna for a trial and saving Tune's experiment state leaves that trial RUNNING in the
    study; on `--resume` the searcher adopts such orphans of its own run (their drawn values
    are kept) before asking for new ones, so the study ends with exactly `num_samples` trials.

    While the study's database is away, trials go on: what the study should record waits in
    a queue (`study/writes.py`) and no new trial is asked for until it is back.
    """

    RUN_ATTR = Attr.RUN
    # A sampler may propose values a finished trial already has (TPE narrowing in on a
    # categorical space did in a fifth of its trials on the learning-curve grid). Training
    # them again gives the same model: the proposal is recorded with the earlier trial's
    # result instead (Optuna's advice for duplicates) and the sampler asked again, at most
    # this many times per trial before the duplicate is trained after all.
    MAX_REDRAWS = 16

    def __init__(self, *args: Any, record: RecordContext, run_id: str = "",
                 num_samples: int | None = None, deduplicate: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._record = record
        self._run_id = run_id
        self._deduplicate = deduplicate
        self._num_samples = num_samples  # None: no cap (the caller counts)
        self._asked = 0  # trials of this run in the study
        self._last: dict[str, dict] = {}
        self._reported: dict[str, set[int]] = defaultdict(set)
        self._curves = CurveLog()
        self._orphans: list[int] = []
        self._lost_ask_since: float | None = None  # when an ask the database cut off began
        self._writes = WriteQueue()
        register(self)

    # -- writes that wait for the database ------------------------------------------------
    def flush_writes(self, force: bool = False) -> bool:
        return self._writes.flush(lambda w: w.apply(searcher_study(self)), force)

    def unwritten(self) -> list[str]:
        return [w.what for w in self._writes.pending]

    def _write(self, write: Write) -> None:
        self._writes.write(write, lambda w: w.apply(searcher_study(self)))

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        if not hasattr(self, "_writes"):  # a searcher state saved before the queue existed
            self._writes = WriteQueue()
        if not hasattr(self, "_lost_ask_since"):  # ... or before cut-off asks were adopted
            self._lost_ask_since = None
        register(self)
        self.flush_writes(force=True)  # what the interrupted run could not write
        trials = searcher_trials(self)
        stored = {storage_id(t): t for t in searcher_study(self).get_trials(deepcopy=False)}
        # Trials the killed driver finished in the study after Tune's last state save: Tune
        # runs them again, but their record is final and must not be touched.
        searcher_finished(self).update(tid for tid, ot in trials.items()
                                       if stored[storage_id(ot)].state.is_finished())
        self._take_stock(stored, owned={storage_id(t) for t in trials.values()})

    def continue_study(self) -> tuple[int, int] | None:
        """The study's last run, whose Tune state is gone (its folder lost with its machine;
        the study kept, in PostgreSQL or copied away), goes on in a new Tune run: its trials
        in the study count towards num_samples and those left RUNNING are adopted with their
        drawn values and trained again from the start. That run's finished and adopted
        trials; None when the study holds no trial (a new run). A run folder restored
        elsewhere has another experiment path, so the run is the study's last one, whose id
        this searcher takes over, not this searcher's own."""
        stored = {storage_id(t): t for t in searcher_study(self).get_trials(deepcopy=False)}
        runs = [t.user_attrs[self.RUN_ATTR] for t in sorted(stored.values(), key=lambda t: t.number)
                if self.RUN_ATTR in t.user_attrs]
        if not runs:
            return None
        if runs[-1] != self._run_id:
            log.info("continuing the study's last run, %s, from %s", runs[-1], self._run_id)
            self._run_id = runs[-1]
        self._take_stock(stored, owned=set())
        return self._asked - len(self._orphans), len(self._orphans)

    def _take_stock(self, stored: dict[int, optuna.trial.FrozenTrial], owned: set[int]) -> None:
        """This run's trials in the study that no Tune trial owns and that were left RUNNING
        are adopted first; every trial of this run counts towards num_samples."""
        self._orphans = [
            sid for sid, t in stored.items()
            if t.state == TrialState.RUNNING and sid not in owned
            and t.user_attrs.get(self.RUN_ATTR) == self._run_id
        ]
        if self._orphans:
            log.info("adopting %d trial(s) left running by the interrupted driver",
                     len(self._orphans))
        # A trial the killed driver asked for and finished after Tune's last state save is
        # unknown to Tune, which will ask for a replacement: counting the run's trials in the
        # study (not Tune's) keeps the study at exactly num_samples.
        self._asked = sum(t.user_attrs.get(self.RUN_ATTR) == self._run_id
                          and StudyTrial.of(t).trained for t in stored.values())

    def suggest(self, trial_id: str) -> dict | None:
        if not self._writes.ready() or not self.flush_writes():
            return None  # the database is away: no new trial until it is back (Tune asks again)
        try:
            self._adopt_lost_ask()
            config = self._suggest(trial_id)
        except DB_DOWN as err:
            self._writes.went_down(err)
            asked = searcher_trials(self).pop(trial_id, None)
            if asked is not None:  # in the study already: the next suggestion adopts it
                self._orphans.insert(0, storage_id(asked))
            return None
        self._writes.came_back()
        return config

    def _suggest(self, trial_id: str) -> dict | None:
        for redraw in range(self.MAX_REDRAWS + 1):
            config = self._suggest_once(trial_id)
            if not isinstance(config, dict) or not self._deduplicate or redraw == self.MAX_REDRAWS:
                return config
            trials = searcher_trials(self)
            earlier = self._finished_with(trials[trial_id].params)
            if earlier is None:
                return config
            self._record_duplicate(trials.pop(trial_id), earlier)
            self._asked -= 1  # a duplicate trains nothing: it does not use up a sample
        return config

    def _suggest_once(self, trial_id: str) -> dict | None:
        trials, study = searcher_trials(self), searcher_study(self)
        if trial_id not in trials:
            if self._orphans:
                trials[trial_id] = attach_trial(study, self._orphans.pop(0))
                trials[trial_id].set_user_attr(self.RUN_ATTR, self._run_id)
            elif self._num_samples is not None and self._asked >= self._num_samples:
                return Searcher.FINISHED  # the run's trials are all in the study already
            else:
                asked_at = time.time()  # the study's clock: datetime_start
                try:
                    # tagged in the insert itself: a driver killed right after a plain ask
                    # left a RUNNING trial without its run, which no --resume adopted
                    trials[trial_id] = ask_with_attrs(study, {self.RUN_ATTR: self._run_id})
                except DB_DOWN:
                    self._lost_ask_since = asked_at  # its insert may have committed
                    raise
                self._asked += 1
        return super().suggest(trial_id)

    def _adopt_lost_ask(self) -> None:
        """`study.ask()` cut off by the database going away can have made its trial anyway
        (the insert committed, the read after it failed): that trial, RUNNING with nothing
        drawn, tagged with this run (in its insert), started after the ask began and owned by
        no Tune trial, is adopted by the next suggestion instead of staying RUNNING for ever
        beside a second one (seen once in the outage test's CI run: 9 trials for 8
        samples)."""
        since = self._lost_ask_since
        if since is None:
            return
        owned = {storage_id(t) for t in searcher_trials(self).values()} | set(self._orphans)
        running = searcher_study(self).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in running:
            if (storage_id(t) not in owned and not t.params
                    and t.user_attrs.get(self.RUN_ATTR) == self._run_id
                    and t.datetime_start is not None
                    and t.datetime_start.timestamp() >= since - 1.0):
                self._orphans.insert(0, storage_id(t))
                self._asked += 1  # the cut-off ask did make a trial of this run
                log.info("adopting trial %d, made by an ask the database outage cut off",
                         t.number)
        self._lost_ask_since = None

    def _finished_with(self, params: dict) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE or PRUNED trial of the study with exactly these values (a FAIL may have
        been transient: it is tried again)."""
        done = searcher_study(self).get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return next((t for t in done if t.params == params), None)

    def _record_duplicate(self, ot_trial: optuna.Trial, earlier: optuna.trial.FrozenTrial
                          ) -> None:
        """Tell the sampler the earlier trial's result again, marked as a copy that trained
        nothing (the ledger counts no epochs for it; reports can tell it apart)."""
        attrs = {**earlier.user_attrs, Attr.DUPLICATE_OF: earlier.number, Attr.EPOCHS_DONE: 0,
                 "wall_seconds": 0.0, self.RUN_ATTR: self._run_id}
        self._write(Write(storage_id(ot_trial), f"trial {ot_trial.number}: a copy of trial "
                          f"{earlier.number}", attrs,
                          tuple(sorted(earlier.intermediate_values.items())), earlier.state,
                          self._study_values(earlier.state, earlier.values)))
        log.info("trial %d draws the values of finished trial %d: its result is reused, the "
                 "sampler asked again", ot_trial.number, earlier.number)

    def _report(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or STEP not in result or self.metric not in result:
            return  # Optuna keeps no intermediate values for multi-objective studies
        step = int(result[STEP])
        if step in self._reported[trial_id]:
            return  # a restored or retried trial reports its steps again
        ot_trial = searcher_trials(self)[trial_id]
        self._write(Write(storage_id(ot_trial), f"trial {ot_trial.number}: {self.metric} at "
                          f"step {step}", intermediate=((step, float(result[self.metric])),)))
        self._reported[trial_id].add(step)

    def _study_values(self, state: TrialState, values: list[float] | None
                      ) -> float | list[float] | None:
        """What `study.tell` takes for a trial that ended in `state`: values only for a
        COMPLETE trial (Optuna's pruned trials carry their last intermediate value), one
        float for a single-objective study."""
        if state != TrialState.COMPLETE or values is None:
            return None
        return list(values) if isinstance(self.metric, list) else values[0]

    def _ignores(self, trial_id: str) -> bool:
        return trial_id in searcher_finished(self) or trial_id not in searcher_trials(self)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._ignores(trial_id):
            return
        self._last[trial_id] = result
        self._curves.add(trial_id, result)
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if self._ignores(trial_id):
            return
        last = result or self._last.get(trial_id)
        if last and not error:
            self._report(trial_id, last)  # the result that made ASHA stop the trial
            self._curves.add(trial_id, last)
        record = record_for(last, error, self._record)
        record.user_attrs[Attr.CURVE] = self._curves.pop(trial_id)
        ot_trial = searcher_trials(self)[trial_id]
        # queued while the database is away; any other refusal is logged, never raised
        self._write(Write(storage_id(ot_trial), f"trial {ot_trial.number}: "
                          f"{record.state.name}", record.user_attrs, state=record.state,
                          values=self._study_values(record.state, record.values)))
        searcher_finished(self).add(trial_id)
        self._last.pop(trial_id, None)
        self._reported.pop(trial_id, None)


class StudyRecorder(Callback):
    """Records trials of non-Optuna searchers into the study, in the same shape."""

    def __init__(self, study: optuna.Study, record: RecordContext) -> None:
        self.study = study
        self.ctx = record
        self.distributions = optuna_distributions(record.space)
        self._values: dict[str, dict[int, float]] = defaultdict(dict)
        self._last: dict[str, dict] = {}
        self._curves = CurveLog()
        self._done: set[str] = set()
        self._writes = WriteQueue()
        register(self)

    def flush_writes(self, force: bool = False) -> bool:
        return self._writes.flush(self.study.add_trial, force)

    def unwritten(self) -> list[str]:
        return [f"trial {t.user_attrs.get(Attr.TUNE_TRIAL_ID)}: {t.state.name}"
                for t in self._writes.pending]

    def setup(self, **info: Any) -> None:
        # On resume, trials already in the study (recorded after Tune's last state save) are
        # not recorded twice when Tune runs them again.
        self._done |= {t.user_attrs.get(Attr.TUNE_TRIAL_ID) for t in
                       self.study.get_trials(deepcopy=False)} - {None}

    def _remember(self, trial_id: str, result: dict | None) -> None:
        if not result:
            return
        self._last[trial_id] = result
        self._curves.add(trial_id, result)
        metric = self.ctx.metrics[0]
        if len(self.ctx.metrics) == 1 and STEP in result and metric in result:
            self._values[trial_id][int(result[STEP])] = float(result[metric])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._remember(trial.trial_id, result)
        self.flush_writes()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, error=True)

    def _record(self, trial: Any, error: bool) -> None:
        if trial.trial_id in self._done:
            return
        self._remember(trial.trial_id, trial.last_result)  # the stopping result, too
        last = self._last.get(trial.trial_id, {})
        record = record_for(last | {"config": trial.config}, error, self.ctx)
        record.user_attrs[Attr.CURVE] = self._curves.pop(trial.trial_id)
        params = {k: v for k, v in flatten(trial.config).items() if k in self.distributions}
        intermediate = self._values.pop(trial.trial_id, {})
        values = record.values
        if record.state == TrialState.PRUNED and intermediate and len(self.ctx.metrics) == 1:
            values = [intermediate[max(intermediate)]]
        elif record.state != TrialState.COMPLETE:
            values = None
        try:
            frozen = optuna.trial.create_trial(
                state=record.state, values=values, params=params,
                distributions={k: self.distributions[k] for k in params},
                user_attrs=record.user_attrs | {Attr.TUNE_TRIAL_ID: trial.trial_id},
                intermediate_values=intermediate)
        except Exception as err:
            log.warning("could not record trial %s in the study: %s", trial.trial_id, err)
        else:  # queued while the database is away
            self._writes.write(frozen, self.study.add_trial)
        self._done.add(trial.trial_id)
