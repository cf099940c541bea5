"""The reaper's pass over the primitives' clocks: wait timeouts and run deadlines, both compared
with the database's `now()`, so they fire on time whichever worker looks, and after restarts of
workers or of Postgres (nothing is held in memory)."""
from __future__ import annotations

import psycopg

from engine.store.deadlines import runs_expire_deadlines, timers_due
from engine.store.errors import translated
from engine.store.waits import waits_expire


@translated
def expire_timers(conn: psycopg.Connection, reaper: str) -> tuple[int, int]:
    """(waits timed out, runs failed by their deadline); one round trip when nothing is due."""
    waits_due, deadlines_due = timers_due(conn)
    waits = waits_expire(conn, reaper) if waits_due else 0
    deadlines = runs_expire_deadlines(conn, reaper) if deadlines_due else 0
    return waits, deadlines
