"""Where the Optuna study lives: PostgreSQL when a URL is given, else a SQLite file in the run
folder. URLs are normalised for the driver we ship and never printed with their password."""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna

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


def resolve_storage_url(url: str | None, run_dir: str | Path) -> str:
    """The study URL: the explicit one, else $LITESEARCH_STORAGE, else SQLite in `run_dir`."""
    url = url or os.environ.get(STORAGE_ENV)
    if url:
        return normalize_url(url)
    path = Path(run_dir).resolve() / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage (what OptunaSearch takes: an object, not a URL)."""
    normalized = normalize_url(url)
    try:
        # A dead server must fail in seconds, not hang a search before it starts.
        engine = ({"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
                  if normalized.startswith("postgresql") else {})
        return optuna.storages.RDBStorage(normalized, engine_kwargs=engine)
    except Exception as err:  # driver errors carry the URL; re-raise without the password
        raise ConnectionError(
            f"cannot open the study storage {mask_url(normalized)}: "
            f"{mask_url(str(err)).splitlines()[0]}"
        ) from None
