"""The Kill-worker button's database side: which process to signal, and the audit row saying it
was asked to. Killing itself is the web app's job (supervisord or a signal)."""
from __future__ import annotations

from typing import Any

import psycopg

from engine.store.notify import notify_after_commit
from engine.store.workers import LIVENESS_LOCK_CLASS

# The newest incarnation of the name, if it is running and its liveness lock is held by a live
# session (a free lock means the process is gone and its pid may already belong to another one).
_TARGET = """
SELECT id, name, host, pid FROM (
    SELECT DISTINCT ON (name) id, name, host, pid, status FROM workers
    WHERE name = %(name)s ORDER BY name, id DESC
) newest
WHERE status = 'running'
  AND NOT pg_try_advisory_xact_lock(%(lock_class)s, id::int)
"""


def worker_kill_target(conn: psycopg.Connection, name: str) -> dict[str, Any] | None:
    """The live worker process called `name` ({id, name, host, pid}), or None."""
    with conn.transaction():  # a lock we happen to take is released at once, at commit
        return conn.execute(_TARGET, {"name": name, "lock_class": LIVENESS_LOCK_CLASS}).fetchone()


def worker_kill_record(conn: psycopg.Connection, name: str, pid: int | None, via: str) -> int:
    """Audit a kill request (event `worker_kill_requested`, detail {pid, via}); returns the audit id.
    Who asked is not recorded: the event feed is public."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO audit_log (worker, event, detail) VALUES (%s, 'worker_kill_requested', "
            "jsonb_build_object('pid', %s::int, 'via', %s::text)) RETURNING id",
            (name, pid, via)).fetchone()
    notify_after_commit(conn, steps_ready=False)
    return row["id"]
