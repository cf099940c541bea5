"""Worker registration and liveness.

Each worker process is an incarnation (a new `workers` row per start) and holds a session-level
advisory lock keyed by that id on a dedicated connection for its whole life. Postgres drops the lock
the moment the process dies, which is how the reaper tells a dead worker in milliseconds.
"""
from __future__ import annotations

import psycopg

from engine.model import WorkerInfo, WorkerStatus
from engine.store.errors import translated
from engine.store.notify import notify_after_commit

LIVENESS_LOCK_CLASS = 7_341_002  # first key of the two-key advisory lock; the second is the incarnation

_REGISTER = """
WITH w AS (
    INSERT INTO workers (name, host, pid, tools) VALUES (%(name)s, %(host)s, %(pid)s, %(tools)s) RETURNING id
), audit AS (
    INSERT INTO audit_log (worker, event, detail)
    SELECT %(name)s, 'worker_started', jsonb_build_object('pid', %(pid)s, 'host', %(host)s::text, 'incarnation', id)
    FROM w
)
SELECT w.id, pg_advisory_lock(%(lock_class)s, w.id::int) IS NOT NULL AS locked FROM w
"""


@translated
def worker_register(conn: psycopg.Connection, name: str, host: str, pid: int, tools: list[str] | None = None) -> int:
    """Register a new incarnation and take its liveness lock in the same statement, so the reaper
    never sees the row without the lock. `conn` must be the dedicated liveness connection. `tools`
    are the tool names it offers (what the API reads to explain a step that waits for a tool)."""
    row = conn.execute(_REGISTER, {"name": name, "host": host, "pid": pid, "tools": sorted(tools or []),
                                   "lock_class": LIVENESS_LOCK_CLASS}).fetchone()
    notify_after_commit(conn, steps_ready=False)  # autocommit: the statement has committed
    return row["id"]


@translated
def worker_lock_liveness(conn: psycopg.Connection, worker_id: int) -> None:
    """Re-take the liveness lock on a new connection (after a reconnect), then say when: after a
    Postgres restart, the reaper reads a free lock taken since the restart as death at once."""
    conn.execute("SELECT pg_advisory_lock(%s, %s::int)", (LIVENESS_LOCK_CLASS, worker_id))
    # Only once the lock is held, so a reaper that sees the new time never mistakes a lock that is
    # still being re-taken for a dead worker's.
    conn.execute("UPDATE workers SET lock_taken_at = now() WHERE id = %s", (worker_id,))


@translated
def worker_touch(conn: psycopg.Connection, worker_id: int) -> None:
    conn.execute("UPDATE workers SET last_seen = now(), status = 'running' WHERE id = %s", (worker_id,))


@translated
def worker_stopped(conn: psycopg.Connection, worker_id: int, name: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE workers SET status = 'stopped', last_seen = now() WHERE id = %s", (worker_id,))
        conn.execute("INSERT INTO audit_log (worker, event, detail) VALUES (%s, 'worker_stopped', "
                     "jsonb_build_object('incarnation', %s::bigint))", (name, worker_id))
    notify_after_commit(conn, steps_ready=False)


@translated
def workers_list(conn: psycopg.Connection, include_gone: bool = False) -> list[WorkerInfo]:
    """Workers (newest incarnation per name first), with the ids of the steps each is running."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (w.name) w.id, w.name, w.pid, w.host, w.status, w.started_at, w.last_seen,
               extract(epoch FROM now() - w.last_seen) AS seen_seconds_ago,
               coalesce((SELECT array_agg(s.id ORDER BY s.id) FROM steps s
                         WHERE s.status = 'running' AND s.lease_worker_id = w.id), '{}') AS running_step_ids
        FROM workers w
        WHERE %s OR w.status = 'running'
        ORDER BY w.name, w.id DESC
        """, (include_gone,)).fetchall()
    return [WorkerInfo(id=r["id"], name=r["name"], pid=r["pid"], host=r["host"], status=WorkerStatus(r["status"]),
                       started_at=r["started_at"], last_seen=r["last_seen"],
                       seen_seconds_ago=float(r["seen_seconds_ago"]), running=tuple(r["running_step_ids"])) for r in rows]
