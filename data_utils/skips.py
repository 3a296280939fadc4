"""Counted, logged skips: bad input never disappears silently and never stops a run."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input that cannot be used at all; the message names the file and what to do."""


@dataclass
class SkipLog:
    """Skipped items by reason. The first few of each reason are logged with their file."""

    what: str = "files"
    log_first: int = 5
    counts: Counter = field(default_factory=Counter)
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, item: str, reason: str, count: int = 1) -> None:
        self.counts[reason] += count
        self.items.append((item, reason))
        if self.counts[reason] <= self.log_first:
            log.warning("skipped %s: %s", item, reason)
        elif self.counts[reason] == self.log_first + 1:
            log.warning("more %s skipped for %r; see the summary", self.what, reason)

    def extend(self, other: SkipLog) -> None:
        for item, reason in other.items:
            self.add(item, reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return f"no {self.what} skipped"
        lines = [f"{self.total} {self.what} skipped:"]
        lines += [f"  {n:6d}  {reason}" for reason, n in self.counts.most_common()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "items": [list(i) for i in self.items]}

    @classmethod
    def from_dict(cls, data: dict, what: str = "files") -> SkipLog:
        skips = cls(what=what)
        skips.counts.update(data.get("counts", {}))
        skips.items = [tuple(i) for i in data.get("items", [])]
        return skips
