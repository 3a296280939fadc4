"""Study writes that survive the database going away for a while (a restart, an upgrade, a
failover). Tune's state is the truth: the trials keep training, and what the study mirror (or
the recorder) could not write waits in a queue, in order, until the database answers again.
The queue is plain data, so Tune's searcher state carries it into a `--resume`; each write
checks what is already stored, so writing it twice changes nothing.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from tune_jobs.internals import stored_trial, write_to_trial

log = logging.getLogger(__name__)

# What an unreachable database raises through Optuna (a refused or dropped connection).
DB_DOWN: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError,
                                            sqlalchemy.exc.OperationalError,
                                            sqlalchemy.exc.InterfaceError, ConnectionError)
RETRY_S = 5.0  # between attempts while it is away: each one costs a refused connection


@dataclass(frozen=True)
class Write:
    """What the study is to learn about one trial: attributes, intermediate values, and
    (optionally) its final state and values."""

    storage_id: int
    what: str  # for people: "trial 12: result of epoch 5"
    attrs: dict[str, Any] = field(default_factory=dict)
    intermediate: tuple[tuple[int, float], ...] = ()
    state: TrialState | None = None
    values: float | list[float] | None = None

    def apply(self, study: optuna.Study) -> None:
        """One read (what is stored), then the writes: on Tune's driver loop, per result."""
        current = stored_trial(study, self.storage_id)
        if current.state.is_finished():
            return  # written before (a queue replayed by --resume)
        write_to_trial(study, self.storage_id, self.attrs,
                       [(s, v) for s, v in self.intermediate
                        if s not in current.intermediate_values])
        if self.state is not None:
            study.tell(current.number, self.values, state=self.state)


class WriteQueue:
    """Writes applied in order by `apply`; while the database is away they wait here."""

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.failed_at: float | None = None  # when the last attempt failed

    def ready(self) -> bool:
        """False for RETRY_S after a failed attempt: the database is (probably) still away."""
        return self.failed_at is None or time.monotonic() - self.failed_at >= RETRY_S

    def went_down(self, err: BaseException) -> None:
        if self.failed_at is None:
            log.warning("the study database is unreachable (%s): trials go on, and what the "
                        "study should record waits until it is back",
                        str(err).splitlines()[0][:200] if str(err) else type(err).__name__)
        self.failed_at = time.monotonic()

    def came_back(self, written: int = 0) -> None:
        if self.failed_at is not None:
            log.warning("the study database is back: %d queued write(s) done", written)
        self.failed_at = None

    def write(self, item: Any, apply: Callable[[Any], None]) -> None:
        self.pending.append(item)
        self.flush(apply)

    def flush(self, apply: Callable[[Any], None], force: bool = False) -> bool:
        """Write what waits, oldest first; True when nothing is left. Between failed attempts
        it waits RETRY_S unless `force`. A write the database refuses for another reason
        than being away is logged and dropped: the study must not stop the search."""
        if not self.pending:
            return True
        if not force and not self.ready():
            return False
        written = 0
        while self.pending:
            try:
                apply(self.pending[0])
            except DB_DOWN as err:
                self.went_down(err)
                return False
            except Exception as err:
                log.warning("could not record %s in the study: %s", _what(self.pending[0]),
                            err)
            self.pending.pop(0)
            written += 1
        self.came_back(written)
        return True


def _what(item: Any) -> str:
    return getattr(item, "what", None) or repr(item)[:200]


class Writer(Protocol):
    def flush_writes(self, force: bool = False) -> bool: ...

    def unwritten(self) -> list[str]: ...


_LIVE: weakref.WeakSet = weakref.WeakSet()  # this process's writers (mirror, recorder)


def register(writer: Writer) -> None:
    _LIVE.add(writer)


def drain(timeout_s: float = 30.0) -> list[str]:
    """At the end of a search: keep trying to write what waits, up to `timeout_s`; returns
    what is still unwritten (empty when the study is complete)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [w for w in list(_LIVE) if not w.flush_writes(force=True)]
        if not left or time.monotonic() >= deadline:
            return [what for w in left for what in w.unwritten()]
        time.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))


__all__ = ["DB_DOWN", "RETRY_S", "Write", "WriteQueue", "drain", "register"]
