"""In-order delivery of audit events whose ids can commit out of order.

Audit ids come from a sequence, but transactions commit in their own order: a reader that only asks
for `id > last` can skip a row that commits after a higher id was already read. The tracker keeps a
*horizon*: every id at or below it has been delivered or given up on. It only advances over
contiguous ids; rows after a missing id are held until the id shows up or has been missing for
`gap_seconds` (an id of a rolled-back transaction never shows up).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

MAX_TRACKED_GAP = 10_000  # ids beyond this many in one gap are not stamped one by one


class HasId(Protocol):
    id: int


class GapTracker:
    def __init__(self, horizon: int, gap_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.horizon = horizon
        self.gap_seconds = gap_seconds
        self.clock = clock
        self._missing_since: dict[int, float] = {}  # missing id -> when it was first seen missing

    @property
    def waiting(self) -> bool:
        """Some id is missing and rows after it are held."""
        return bool(self._missing_since)

    def mark_missing(self, ids: Sequence[int]) -> None:
        """Declare ids above the horizon as missing since now (at start: ids not visible yet)."""
        now = self.clock()
        for missing in ids[:MAX_TRACKED_GAP]:
            self._missing_since.setdefault(missing, now)

    def accept(self, rows: Sequence[HasId]) -> list:
        """Given every row with id > horizon (ascending), return those deliverable now, in order,
        and advance the horizon past them."""
        now = self.clock()
        self._stamp_gaps(rows, now)
        deliver = []
        for row in rows:
            if row.id <= self.horizon:
                continue
            missing = range(self.horizon + 1, row.id)
            if missing and not self._expired(missing, now):
                break
            self._forget(range(self.horizon + 1, row.id + 1))
            deliver.append(row)
            self.horizon = row.id
        return deliver

    def _stamp_gaps(self, rows: Sequence[HasId], now: float) -> None:
        previous = self.horizon
        for row in rows:
            if row.id > previous + 1:
                for missing in range(previous + 1, row.id)[:MAX_TRACKED_GAP]:
                    self._missing_since.setdefault(missing, now)
            previous = max(previous, row.id)

    def _expired(self, missing: range, now: float) -> bool:
        newest = max(self._missing_since.get(m, now) for m in missing[:MAX_TRACKED_GAP])
        return now - newest >= self.gap_seconds

    def _forget(self, ids: range) -> None:
        for gone in ids[:MAX_TRACKED_GAP]:
            self._missing_since.pop(gone, None)
