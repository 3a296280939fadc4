import contextlib

import optuna
import pytest

from tune_jobs.study.storage import mask_url, normalize_url, open_storage, resolve_storage_url


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgresql://u:p@h:5/db", "postgresql+psycopg2://u:p@h:5/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_mask_url_hides_password_only() -> None:
    assert mask_url("postgresql+psycopg2://bob:s3cr:et@db:5432/x") == (
        "postgresql+psycopg2://bob:***@db:5432/x"
    )
    assert mask_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"


def test_resolve_prefers_argument_then_env_then_sqlite(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LITESEARCH_STORAGE", raising=False)
    assert resolve_storage_url(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/study.db"
    monkeypatch.setenv("LITESEARCH_STORAGE", "postgresql://a:b@h/db")
    assert resolve_storage_url(None, tmp_path) == "postgresql+psycopg2://a:b@h/db"
    assert resolve_storage_url("sqlite:///y.db", tmp_path) == "sqlite:///y.db"


def test_unreachable_database_error_masks_password() -> None:
    with pytest.raises(ConnectionError) as info:
        open_storage("postgresql://bob:hunter2@127.0.0.1:1/nodb")
    assert "hunter2" not in str(info.value)
    assert "bob:***@127.0.0.1:1" in str(info.value)


@pytest.mark.postgres
def test_study_round_trip_in_postgres(postgres_url: str) -> None:
    storage = open_storage(postgres_url)
    name = "test-foundation-roundtrip"
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=3)
    again = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
    assert len(again.trials) == 3
    assert again.best_value == min(t.value for t in study.trials)


def _open_behind(url: str, barrier, results) -> None:
    """One process of the race below: open `url` once every other process is ready too."""
    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except ConnectionError as err:
        results.put(str(err))


def test_processes_opening_one_fresh_database_at_once_all_open_it(tmp_path) -> None:
    """Four processes open the same new SQLite study file at the same moment (a search and
    what reads its study; CI once lost a search this way): each creates Optuna's tables, all
    but one used to fail ("table ... already exists", "UNIQUE constraint failed:
    alembic_version"; 2 of 5 rounds here). Each opens it, on three fresh files."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/study{round_}.db"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_behind, args=(url, barrier, results))
                 for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
        assert outcomes == ["ok"] * 4, outcomes
    optuna.create_study(study_name="s", storage=open_storage(url))  # a usable schema
