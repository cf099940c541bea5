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

from engine.store.errors import translated
from engine.store.workers import LIVENESS_LOCK_CLASS

# One statement, one round trip per wait: pick the next running incarnation after `me` by id
# (wrapping around to the lowest) and wait, at most `timeout`, for its lock. The wait is the
# function of migration 0008: it returns false on the timeout instead of raising it, so a watched
# worker that stays alive logs no ERROR on the server.
_NEXT_RUNNING = "SELECT id FROM workers WHERE status = 'running' AND id <> %(me)s ORDER BY id < %(me)s, id LIMIT 1"
_WATCH = """
SELECT w.id, advisory_xact_lock_wait(%(lock_class)s, w.id::int, %(timeout)s) AS died
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
    row = conn.execute(_WATCH, params).fetchone()
    return Watched(alone=row is None, died=row is not None and row["died"])


@translated
def worker_to_watch(conn: psycopg.Connection, me: int) -> int | None:
    """The incarnation `worker_watch_neighbour` waits for, or None when `me` is the only one running."""
    row = conn.execute(_NEXT_RUNNING, {"me": me}).fetchone()
    return row["id"] if row else None
