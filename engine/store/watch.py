"""Waiting for a worker to die: event-driven crash detection.

Each worker holds its liveness lock (`workers.LIVENESS_LOCK_CLASS`, its incarnation id) for its
whole life. A session that asks for the same lock and waits is woken by Postgres the moment the
owner's session ends — a few milliseconds after a kill -9, with no polling. Each worker watches one
other (the next running incarnation by id, wrapping around), so every worker is watched by one.
A frozen worker keeps its session and its lock: leases cover that case (`reclaim_expired_leases`).
"""
from __future__ import annotations

import psycopg
from psycopg import errors

from engine.store.errors import translated
from engine.store.workers import LIVENESS_LOCK_CLASS

# The next running incarnation after `me` by id, wrapping around to the lowest.
_NEXT_TO_WATCH = """
SELECT id FROM workers WHERE status = 'running' AND id <> %(me)s
ORDER BY id < %(me)s, id LIMIT 1
"""

# Taken and given back at once (a transaction-level lock, released at COMMIT): the point is only
# to be woken when the owner's session is gone.
_WAIT_FOR_LOCK = "SELECT pg_advisory_xact_lock(%(lock_class)s, %(id)s::int)"


@translated
def worker_to_watch(conn: psycopg.Connection, me: int) -> int | None:
    """The incarnation this worker watches, or None when it is the only one running."""
    row = conn.execute(_NEXT_TO_WATCH, {"me": me}).fetchone()
    return row["id"] if row else None


@translated
def worker_wait_for_death(conn: psycopg.Connection, worker_id: int, timeout_seconds: float) -> bool:
    """Wait up to `timeout_seconds` for the liveness lock of `worker_id` to be free. True when it
    is (its session ended, or it stopped); False when it is still held when the time is up."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(timeout_seconds * 1000)}ms",))
            conn.execute(_WAIT_FOR_LOCK, {"lock_class": LIVENESS_LOCK_CLASS, "id": worker_id})
    except errors.LockNotAvailable:
        return False
    return True
