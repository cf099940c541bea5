"""Waiting for a worker to die: event-driven crash detection.

Each worker holds its liveness lock (`workers.LIVENESS_LOCK_CLASS`, its incarnation id) for its
whole life. A session that asks for the same lock and waits is woken by Postgres the moment the
owner's session ends — a few milliseconds after a kill -9, with no polling. Each worker watches one
other (the next running incarnation by id, wrapping around), so every worker is watched by one.
A frozen worker keeps its session and its lock: leases cover that case (`reclaim_expired_leases`).

While it waits, the statement holds a snapshot, which holds back the database's xmin horizon for
that long (dead rows newer than it are not pruned); waits are therefore bounded (`timeout`).
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import errors

from engine.store.errors import translated
from engine.store.workers import LIVENESS_LOCK_CLASS

# One statement, one round trip per wait: pick the next running incarnation after `me` by id
# (wrapping around to the lowest), bound the wait (a setting local to this statement's implicit
# transaction, evaluated before the lock in the select list), wait for its lock. The lock is a
# transaction-level one, released when the statement ends: the point is only to be woken.
_NEXT_RUNNING = "SELECT id FROM workers WHERE status = 'running' AND id <> %(me)s ORDER BY id < %(me)s, id LIMIT 1"
_WATCH = """
SELECT w.id, set_config('lock_timeout', %(timeout)s, true) AS timeout,
       pg_advisory_xact_lock(%(lock_class)s, w.id::int) AS waited
FROM (""" + _NEXT_RUNNING + """) w
"""


@dataclass(frozen=True)
class Watched:
    """The outcome of one wait: `alone` (no other worker is running), or whether the watched
    worker's liveness lock was free (`died`: its session ended, or it stopped)."""
    alone: bool
    died: bool


@translated
def worker_watch_neighbour(conn: psycopg.Connection, me: int, timeout_seconds: float) -> Watched:
    """Wait up to `timeout_seconds` for the next running worker after `me` to lose its liveness
    lock. Must run outside a transaction (autocommit), on a connection of its own."""
    params = {"me": me, "lock_class": LIVENESS_LOCK_CLASS, "timeout": f"{max(1, int(timeout_seconds * 1000))}ms"}
    try:
        row = conn.execute(_WATCH, params).fetchone()
    except errors.LockNotAvailable:
        return Watched(alone=False, died=False)
    return Watched(alone=row is None, died=row is not None)


@translated
def worker_to_watch(conn: psycopg.Connection, me: int) -> int | None:
    """The incarnation `worker_watch_neighbour` waits for, or None when `me` is the only one running."""
    row = conn.execute(_NEXT_RUNNING, {"me": me}).fetchone()
    return row["id"] if row else None
