"""The contract with Ray's and Optuna's private names (tune_jobs/internals.py): an upgrade that
moves one fails here, naming it, instead of in the middle of a search."""

from tune_jobs import internals


def test_every_internal_litesearch_touches_still_behaves() -> None:
    problems = internals.check_contract()
    assert not problems, "\n".join(problems)


def test_the_contract_check_names_a_moved_internal(monkeypatch) -> None:
    """The check can fail: with `_ot_trials` renamed, as an upgrade might, it says which."""
    from ray.tune.search.optuna import OptunaSearch

    original = OptunaSearch.suggest

    def renamed(self, trial_id):
        result = original(self, trial_id)
        self._ot_trials_v2 = self.__dict__.pop("_ot_trials")
        return result

    monkeypatch.setattr(OptunaSearch, "suggest", renamed)
    problems = internals.check_contract()
    assert problems and "_ot_trials" in problems[0]


def test_no_private_ray_or_optuna_name_outside_the_adapter() -> None:
    """The private names listed in internals.py appear nowhere else in the library."""
    import re

    from conftest import REPO

    private = re.compile(r"\._ot_study|\._ot_trials|\._completed_trials|\._trial_id\b|"
                         r"\._storage\b|ray\.[\w.]*\._private|optuna\.trial\.Trial\(")
    offenders = [f"{p.relative_to(REPO)}:{i}" for folder in ("tune_jobs", "models",
                                                            "data_utils", "benchmarks")
                 for p in sorted((REPO / folder).rglob("*.py")) if p.name != "internals.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if private.search(line)]
    assert not offenders, offenders
