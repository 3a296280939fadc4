"""Live search metrics for the Ray dashboard: trials by state, best score so far, epochs per
second on each node, exported from the driver as Ray metrics (`ray.util.metrics`).

Ray serves them in Prometheus format on every node's metrics port (`ray start
--metrics-export-port`), under the names `ray_litesearch_*`, tagged with the study; the
dashboard's Metrics tab shows them once Prometheus and Grafana are attached (`ray metrics
launch-prometheus`), and `curl HEAD:PORT/metrics | grep litesearch` shows them without.
configs/grafana/litesearch.json graphs them (the head installs it where Ray's Grafana looks).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque

from optuna.trial import TrialState
from ray.tune import Callback

from tune_jobs.outcome import Outcome, budget_of, epochs_done, outcome_of, trial_state

STATES = ("running", "completed", "pruned", "failed")
_STATE_NAMES = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned",
                TrialState.FAIL: "failed"}
WINDOW_S = 60.0  # epochs per second over the last minute: what the cluster does now


def final_state(result: dict | None, max_epochs: int) -> str:
    """How a trial ended, from its last result: the study mirror's rule (`trial_state`)."""
    state = trial_state(outcome_of(result), epochs_done(result), budget_of(result, max_epochs))
    return _STATE_NAMES[state]


class LiveMetrics(Callback):
    """Keeps one state per trial (so a retried trial is counted once) and sets the gauges
    from the counts after every event."""

    def __init__(self, study: str, max_epochs: int) -> None:
        self.study, self.max_epochs = study, max_epochs
        self.states: dict[str, str] = {}
        self.best: float | None = None
        self.epochs_total = 0
        # when each epoch finished, by the node (host name) that trained it
        self._epoch_times: defaultdict[str, deque[float]] = defaultdict(deque)
        self._gauges: dict | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; metric handles stay behind
        # and are made again on first use after a restore
        return {**self.__dict__, "_gauges": None}

    def gauges(self) -> dict:
        if self._gauges is None:
            from ray.util.metrics import Gauge

            study = ("study",)
            self._gauges = {
                "trials": Gauge("litesearch_trials", "trials by state",
                                tag_keys=("study", "state")),
                "best": Gauge("litesearch_best_score",
                              "lowest score reported so far (any trial, any epoch)",
                              tag_keys=study),
                "rate": Gauge("litesearch_epochs_per_second",
                              f"trial epochs finished per second over the last {WINDOW_S:.0f} s,"
                              " by the node that trained them", tag_keys=("study", "node")),
                "epochs": Gauge("litesearch_epochs_total", "trial epochs finished",
                                tag_keys=study),
            }
        return self._gauges

    def setup(self, **info) -> None:
        self._publish()

    # --------------------------------------------------------------------- Tune's hooks
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._set(trial.trial_id, "running")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._set(trial.trial_id, "running")  # a lost worker: retried, not a new trial

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        score = result.get("score")
        if score is not None and score == score and (self.best is None or score < self.best):
            self.best = float(score)
        if outcome_of(result) == Outcome.TRAINED and epochs_done(result) > 0:
            self.epochs_total += 1
            self._epoch_times[str(result.get("node", "unknown"))].append(time.monotonic())
        self._publish()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._set(trial.trial_id, final_state(trial.last_result, self.max_epochs))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._set(trial.trial_id, "failed")

    # ------------------------------------------------------------------------ helpers
    def counts(self) -> dict[str, int]:
        return {s: sum(v == s for v in self.states.values()) for s in STATES}

    def epochs_per_second(self) -> dict[str, float]:
        """Per node, over the last WINDOW_S; a node that went quiet reports 0, not its past."""
        now = time.monotonic()
        for times in self._epoch_times.values():
            while times and now - times[0] > WINDOW_S:
                times.popleft()
        return {node: len(times) / WINDOW_S for node, times in self._epoch_times.items()}

    def _set(self, trial_id: str, state: str) -> None:
        self.states[trial_id] = state
        self._publish()

    def _publish(self) -> None:
        g, tags = self.gauges(), {"study": self.study}
        for state, n in self.counts().items():
            g["trials"].set(n, tags=tags | {"state": state})
        if self.best is not None:
            g["best"].set(self.best, tags=tags)
        for node, rate in self.epochs_per_second().items():
            g["rate"].set(rate, tags=tags | {"node": node})
        g["epochs"].set(self.epochs_total, tags=tags)
