"""Reading an append-only audit log by id without missing rows that commit late.

Audit ids come from a sequence, and transactions commit out of id order: a reader that saw id 101
may later find 100. A cursor therefore re-reads from a floor that only moves past ids seen at least
`settle_seconds` ago, and drops what it already returned.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar


class HasId(Protocol):
    id: int


E = TypeVar("E", bound=HasId)

SETTLE_SECONDS_DEFAULT = 2.0


class EventCursor:
    def __init__(self, after: int = 0, settle_seconds: float = SETTLE_SECONDS_DEFAULT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.floor = after
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.first_seen: dict[int, float] = {}

    def accept(self, events: Iterable[E]) -> list[E]:
        """Of events read with id > floor, those not returned before, in id order."""
        now = self.clock()
        fresh = []
        for event in sorted(events, key=lambda e: e.id):
            if event.id > self.floor and event.id not in self.first_seen:
                self.first_seen[event.id] = now
                fresh.append(event)
        settled = [i for i, seen in self.first_seen.items() if now - seen >= self.settle_seconds]
        if settled:
            # Only past ids seen long enough ago that any lower id still in flight has committed.
            limit = max(settled)
            self.floor = max(self.floor, limit)
            self.first_seen = {i: t for i, t in self.first_seen.items() if i > limit}
        return fresh


_EVENT_ID = re.compile(r"[0-9]{1,18}\Z")  # ASCII digits only, and small enough for a bigint


def parse_after(raw: str | None) -> int | None:
    """The `after=` event id of a request (absent: 0), or None when it is not one. `str.isdigit`
    is not enough: it accepts "²", which int() refuses, and a number too big for Postgres."""
    if raw is None:
        return 0
    return int(raw) if _EVENT_ID.match(raw) else None
