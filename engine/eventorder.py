"""Reading the audit log in id order although its ids commit out of order: the one solution, used
by the web app's live stream (`app.broadcast`) and by `engine watch`.

Audit ids come from a sequence, but transactions commit in their own order: a reader that only asks
for `id > last` can skip a row that commits after a higher id was already read. `GapTracker` keeps
a *horizon*: every id at or below it has been delivered or given up on. It only advances over
contiguous ids; rows after a missing id are held until the id shows up or has been missing for
`gap_seconds` (an id of a rolled-back transaction never shows up). `AuditFollower` drives a tracker
over the whole log on a caller's connection. See docs/ARCHITECTURE.md ("Events").
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import psycopg

from engine.store.events import Event, event_latest_id, events_after, events_global_after

MAX_TRACKED_GAP = 10_000  # ids beyond this many in one gap are not stamped one by one
STARTUP_LOOKBACK_IDS = 256  # ids below the first horizon checked for transactions still in flight
READ_BATCH = 500
WATCH_GAP_SECONDS = 2.0  # as the live stream's LIVE_GAP_SECONDS default


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


class AuditFollower:
    """Follows the audit log of every run in id order. `begin` sets the first horizon (the newest
    id, or just below the oldest id of the last `STARTUP_LOOKBACK_IDS` that is not visible yet, as
    its transaction may still commit); `poll` hands out what is deliverable since."""

    def __init__(self, gap_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.gap_seconds = gap_seconds
        self.clock = clock
        self.tracker: GapTracker | None = None

    @property
    def horizon(self) -> int:
        assert self.tracker is not None, "begin() first"
        return self.tracker.horizon

    @property
    def waiting(self) -> bool:
        return self.tracker is not None and self.tracker.waiting

    def begin(self, conn: psycopg.Connection) -> None:
        """Set the first horizon; after a reconnect, keep it and re-read from it."""
        if self.tracker is not None:
            return
        latest = event_latest_id(conn)
        window = range(max(0, latest - STARTUP_LOOKBACK_IDS) + 1, latest + 1)
        seen = {e.id for e in events_global_after(conn, window.start - 1, limit=len(window) + 1)}
        missing = [i for i in window if i not in seen]
        tracker = GapTracker(latest, self.gap_seconds, self.clock)
        if missing:
            tracker.horizon = missing[0] - 1
            tracker.mark_missing(missing)
        self.tracker = tracker

    def poll(self, conn: psycopg.Connection, deliver: Callable[[list[Event]], None],
             lock: contextlib.AbstractContextManager | None = None) -> int:
        """Read rows after the horizon and pass the deliverable ones to `deliver`, in id order, batch
        by batch; accepting and delivering happen under `lock` (so a reader of `horizon` holding it
        sees both or neither). Returns the number of events delivered."""
        assert self.tracker is not None, "begin() first"
        lock = lock or contextlib.nullcontext()
        delivered = 0
        while True:
            rows = events_global_after(conn, self.tracker.horizon, limit=READ_BATCH)
            with lock:
                ready = self.tracker.accept(rows)
                if ready:
                    deliver(ready)
            delivered += len(ready)
            if len(rows) < READ_BATCH or not ready:
                return delivered


class RunFollower:
    """One run's events in id order, history first, then live (`engine watch`): an `AuditFollower`
    over the whole log, filtered to the run."""

    def __init__(self, run_id: str, after: int = 0, gap_seconds: float = WATCH_GAP_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run_id = str(run_id)
        self.after = after
        self.follower = AuditFollower(gap_seconds, clock)

    def start(self, conn: psycopg.Connection) -> list[Event]:
        """Set the horizon and return the run's events after `after` up to it."""
        self.follower.begin(conn)
        history: list[Event] = []
        while True:
            page = events_after(conn, self.run_id, max([self.after, *(e.id for e in history)]), limit=1000)
            history += [e for e in page if e.id <= self.follower.horizon]
            if len(page) < 1000 or page[-1].id > self.follower.horizon:
                return history

    def poll(self, conn: psycopg.Connection) -> list[Event]:
        """The run's events that became deliverable since."""
        events: list[Event] = []
        self.follower.poll(conn, lambda ready: events.extend(self._mine(ready)))
        return events

    def finish(self, conn: psycopg.Connection) -> list[Event]:
        """Once the run is terminal every row it will have is committed: the rest, without waiting
        for other runs' gaps."""
        return self._mine(events_after(conn, self.run_id, self.follower.horizon, limit=100_000))

    def _mine(self, events: list[Event]) -> list[Event]:
        return [e for e in events if str(e.run_id) == self.run_id and e.id > self.after]
