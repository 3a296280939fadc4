"""Where the Optuna study lives: PostgreSQL when a URL is given, else a SQLite file in the run
folder. URLs are normalised for the driver we ship and never printed with their password, and
never stored with it: the password lives only where the user put it (the URL they passed, or
$LITESEARCH_STORAGE), and whatever was saved (Tune's experiment state, the study's config) is
given it again at run time."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import optuna

from tune_jobs.internals import with_storage_url

STORAGE_ENV = "LITESEARCH_STORAGE"

# SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3, but we ship psycopg2-binary.
_POSTGRES_SCHEME = re.compile(r"^(postgres|postgresql)(\+psycopg2)?://")
_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]*)(@)")


def normalize_url(url: str) -> str:
    """`postgres://` and `postgresql://` become `postgresql+psycopg2://`; others pass through."""
    return _POSTGRES_SCHEME.sub("postgresql+psycopg2://", url.strip(), count=1)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, for logs and reports."""
    return _PASSWORD.sub(r"\1***\3", url)


def is_masked(url: str) -> bool:
    """Whether `url` is a stored one whose password `mask_url` replaced."""
    return "***" in url


def without_password(url: str | None) -> str | None:
    """What may be stored of a URL: the URL with its password masked."""
    return None if url is None else mask_url(url)


# masked URL -> URL, for the URLs this process opened (what the user passed, in memory only)
_OPENED: dict[str, str] = {}


def with_password(stored: str) -> str:
    """The URL a stored (masked) URL stands for: one this process opened, or
    $LITESEARCH_STORAGE when it is the same database; else a clear error."""
    if not is_masked(stored):
        return stored  # no password was masked
    if stored in _OPENED:
        return _OPENED[stored]
    env = os.environ.get(STORAGE_ENV)
    if env and mask_url(normalize_url(env)) == stored:
        return normalize_url(env)
    raise ConnectionError(f"the study storage {stored} needs its password, which litesearch "
                          f"never stores: pass the URL again (--storage) or set {STORAGE_ENV}")


class StudyStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose pickles (Tune's searcher and experiment state, written to
    the results folder or S3) hold the URL without its password; unpickling asks
    `with_password` for it."""

    def __getstate__(self) -> dict:
        return with_storage_url(super().__getstate__(), mask_url)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(with_storage_url(state, with_password))


def resolve_storage_url(url: str | None, run_dir: str | Path) -> str:
    """The study URL: the explicit one, else $LITESEARCH_STORAGE, else SQLite in `run_dir`."""
    url = url or os.environ.get(STORAGE_ENV)
    if url:
        return normalize_url(url)
    path = Path(run_dir).resolve() / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


# Processes opening one fresh database at once (a search and whatever reads its study, trials
# on a new cluster) each create Optuna's tables; all but one fail on what another has just
# written (SQLite: "table ... already exists", "UNIQUE constraint failed: alembic_version";
# PostgreSQL: "duplicate key value"). Opening again finds the schema in place.
_SCHEMA_RACE = re.compile(r"already exists|UNIQUE constraint failed|duplicate key value")
SCHEMA_RACE_TRIES = 5


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage (what OptunaSearch takes: an object, not a URL)."""
    normalized = normalize_url(url)
    # A dead server must fail in seconds, not hang a search before it starts.
    engine = ({"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
              if normalized.startswith("postgresql") else {})
    for attempt in range(1, SCHEMA_RACE_TRIES + 1):
        try:
            storage = StudyStorage(normalized, engine_kwargs=engine)
            _OPENED[mask_url(storage.url)] = storage.url
            return storage
        except Exception as err:  # driver errors carry the URL; re-raise without the password
            if attempt < SCHEMA_RACE_TRIES and _SCHEMA_RACE.search(str(err)):
                time.sleep(0.2 * attempt)  # another process is creating the tables
                continue
            raise ConnectionError(
                f"cannot open the study storage {mask_url(normalized)}: "
                f"{mask_url(str(err)).splitlines()[0]}"
            ) from None
    raise AssertionError("unreachable")
