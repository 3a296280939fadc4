"""Every private name of Ray or Optuna that litesearch touches, in one place.

Only the version pins in pyproject.toml guard these. `check_contract()` exercises each one on
the installed versions and names the internal that moved; `tests/test_internals.py` runs it,
so an upgrade that breaks one fails there, not in the middle of a search.

- `OptunaSearch._ot_study`, `._ot_trials`, `._completed_trials`: the study mirror adopts
  trials a killed driver left RUNNING, asks for its own trials (to tag them with the run) and
  skips trials finished after Tune's last state save (`tune_jobs/study/mirror.py`).
- `optuna.trial.Trial(study, trial_id)`: reattach a live trial of the study by its storage id.
- `FrozenTrial._trial_id`: the storage id of a stored trial (its `number` is per study).
- `Study._storage.get_trial(trial_id)`: one stored trial by storage id, without reading the
  whole study (the mirror checks what a queued write already wrote).
- `Study._storage.set_trial_user_attr` / `.set_trial_intermediate_value`: the mirror's writes
  straight to the storage, without building a live `Trial` (which reads the trial again and
  calls the sampler's `before_trial`) for each.
- `Study._storage.create_new_trial(Study._study_id, template_trial=...)` and
  `Study._thread_local.cached_all_trials`: `Study.ask()` with user attributes written in the
  same insert as the trial (the mirror's run tag: a driver killed between an ask and a later
  `set_user_attr` left a RUNNING trial no resume could adopt).
- `ASHAScheduler.__dict__` (its rungs `_brackets`, the trials' `_trial_info`, `_counter`):
  `ResumableASHA` saves and reloads the whole state, since `Tuner.restore` brings back the
  scheduler of the run's start (`tune_jobs/schedulers.py`).
- `TuneController.stop_trial`'s order: the scheduler's `on_trial_complete` runs before the
  searcher's and the callbacks', which read `trial.last_result` after it: `ResumablePASHA`
  writes the budget it gave a trial there (not a private name, an order; the PASHA arm of
  `tests/test_curves.py`'s replay through the real search path fails if it changes).
- `RDBStorage.__getstate__` / `__setstate__` and its `url` key: the study storage's pickles
  (Tune's searcher state) hold the URL without its password (`tune_jobs/study/storage.py`).
- `ray.autoscaler._private.util.prepare_config` / `validate_config`: Ray's own offline check
  of a cluster YAML (what `ray up` runs first), used by the cluster tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

# ------------------------------------------------------------------------------ OptunaSearch


def searcher_study(searcher: Any) -> optuna.Study:
    """The study an `OptunaSearch` asks and tells."""
    return searcher._ot_study


def searcher_trials(searcher: Any) -> dict[str, optuna.Trial]:
    """Tune trial id -> the live Optuna trial an `OptunaSearch` drew for it (mutable)."""
    return searcher._ot_trials


def searcher_finished(searcher: Any) -> set[str]:
    """Tune trial ids whose results an `OptunaSearch` no longer passes to Optuna (mutable)."""
    return searcher._completed_trials


# ------------------------------------------------------------------------------------ Optuna


def storage_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The trial's id in the storage (unique across studies, unlike `number`)."""
    return trial._trial_id


def stored_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """The stored trial with this storage id, as the database has it now."""
    return study._storage.get_trial(trial_id)


def attach_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """A live `Trial` for a stored RUNNING trial, to suggest, report and tell through."""
    return optuna.trial.Trial(study, trial_id)


def write_to_trial(study: optuna.Study, trial_id: int, user_attrs: dict[str, Any],
                   intermediate: Sequence[tuple[int, float]] = ()) -> None:
    """User attributes and intermediate values of a stored RUNNING trial, written straight to
    the storage."""
    storage = study._storage
    for key, value in user_attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for step, value in intermediate:
        storage.set_trial_intermediate_value(trial_id, step, value)


def ask_with_attrs(study: optuna.Study, user_attrs: dict[str, Any]) -> optuna.Trial:
    """`study.ask()` whose new RUNNING trial carries `user_attrs` from its first commit (one
    insert, no window in which it exists without them)."""
    template = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=user_attrs)
    study._thread_local.cached_all_trials = None  # as ask(): the sampler reads the study anew
    return attach_trial(study, study._storage.create_new_trial(study._study_id, template))


# --------------------------------------------------------------------------------------- Ray


def validate_cluster_config(config: dict) -> dict:
    """Ray's offline check of a cluster config (the first thing `ray up` does); returns the
    config with Ray's defaults filled in, raises on an invalid one."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


# --------------------------------------------------------------------------- pickled state

# what ASHA's state must hold for its rungs to come back (Ray 2.60)
ASHA_STATE = ("_brackets", "_trial_info", "_counter")


def scheduler_state(scheduler: Any, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """A Tune scheduler's whole state (ASHA: its rungs and the trials' brackets)."""
    return {k: v for k, v in scheduler.__dict__.items() if k not in leave_out}


def restore_scheduler_state(scheduler: Any, state: dict[str, Any]) -> None:
    scheduler.__dict__.update(state)


def with_storage_url(state: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """An RDBStorage pickle state with its URL changed (masked when pickled, the password
    put back when unpickled)."""
    return {**state, "url": change(state["url"])}


# ---------------------------------------------------------------------------------- contract


def check_contract() -> list[str]:
    """Exercise every internal above on the installed Ray and Optuna; returns one line per
    broken one, naming it (empty when all hold)."""
    from ray.tune.search.optuna import OptunaSearch

    problems: list[str] = []

    def expect(name: str, ok: bool, got: Any) -> None:
        if not ok:
            problems.append(f"{name}: not what litesearch expects (got {got!r})")

    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def space(trial: optuna.Trial) -> None:
        trial.suggest_float("x", 0.0, 1.0)

    searcher = OptunaSearch(space=space, metric="score", mode="min",
                            sampler=optuna.samplers.RandomSampler(seed=0))
    try:
        searcher.suggest("t1")
        study = searcher_study(searcher)
        expect("OptunaSearch._ot_study", isinstance(study, optuna.Study), type(study))
        trials = searcher_trials(searcher)
        expect("OptunaSearch._ot_trials", isinstance(trials, dict)
               and isinstance(trials.get("t1"), optuna.Trial), trials)
        searcher.on_trial_complete("t1", {"score": 0.5, "training_iteration": 1})
        finished = searcher_finished(searcher)
        expect("OptunaSearch._completed_trials", isinstance(finished, set) and "t1" in finished,
               finished)
    except AttributeError as err:
        problems.append(f"OptunaSearch internals: {err}")
        return problems

    try:
        stored = study.ask()
        sid = storage_id(stored)
        frozen = study.get_trials(deepcopy=False)[-1]
        expect("FrozenTrial._trial_id", storage_id(frozen) == sid, storage_id(frozen))
        again = attach_trial(study, sid)
        again.suggest_float("x", 0.0, 1.0)
        study.tell(again, 0.1)
        expect("optuna.trial.Trial(study, trial_id)",
               study.get_trials(deepcopy=False)[-1].value == 0.1, study.trials[-1].value)
        expect("Study._storage.get_trial", stored_trial(study, sid).value == 0.1,
               stored_trial(study, sid))
        tagged = ask_with_attrs(study, {"run": "r"})
        frozen = stored_trial(study, storage_id(tagged))
        expect("Study._storage.create_new_trial(template_trial=...)",
               frozen.state == TrialState.RUNNING and frozen.user_attrs == {"run": "r"}
               and frozen.datetime_start is not None, frozen)
        tagged.suggest_float("x", 0.0, 1.0)
        write_to_trial(study, storage_id(tagged), {"k": 1}, [(3, 0.5)])
        frozen = stored_trial(study, storage_id(tagged))
        expect("Study._storage.set_trial_user_attr / set_trial_intermediate_value",
               frozen.user_attrs.get("k") == 1 and frozen.intermediate_values == {3: 0.5},
               frozen)
        study.tell(tagged, 0.2)
    except (AttributeError, TypeError) as err:
        problems.append(f"optuna trial internals: {err}")

    problems += _check_pickled_state()
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: F401
    except ImportError as err:
        problems.append(f"ray.autoscaler._private.util.prepare_config/validate_config: {err}")
    return problems


def _check_pickled_state() -> list[str]:
    """ASHA's rungs and RDBStorage's URL, where the pickles litesearch changes keep them."""
    import pickle
    import tempfile
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler

    problems = []
    asha = ASHAScheduler(time_attr="training_iteration", metric="score", mode="min", max_t=4,
                         grace_period=1)
    trial = SimpleNamespace(trial_id="t1")
    asha.on_trial_add(None, trial)
    asha.on_trial_result(None, trial, {"training_iteration": 1, "score": 0.5})
    state = scheduler_state(asha)
    fresh = ASHAScheduler(time_attr="training_iteration", metric="score", mode="min", max_t=4,
                          grace_period=1)
    restore_scheduler_state(fresh, pickle.loads(pickle.dumps(state)))
    if not all(k in state for k in ASHA_STATE) or fresh.debug_string() != asha.debug_string():
        problems.append(f"ASHAScheduler.__dict__: its rungs are not in {ASHA_STATE} or do not "
                        f"come back (got {sorted(state)})")
    with tempfile.TemporaryDirectory() as tmp:
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}/contract.db")
        try:
            pickled = storage.__getstate__()
            moved = with_storage_url(pickled, lambda url: url)
            storage.__setstate__(moved)
            storage.get_all_studies()
        except (KeyError, TypeError, AttributeError) as err:
            problems.append(f"RDBStorage.__getstate__/__setstate__ with a 'url' key: {err!r}")
        finally:
            storage.engine.dispose()
    return problems


__all__ = [
    "ASHA_STATE",
    "ask_with_attrs",
    "attach_trial",
    "check_contract",
    "restore_scheduler_state",
    "scheduler_state",
    "searcher_finished",
    "searcher_study",
    "searcher_trials",
    "storage_id",
    "stored_trial",
    "validate_cluster_config",
    "with_storage_url",
    "write_to_trial",
]
