"""`step_log` events: lines a tool writes with `ctx.log`, stored in the run's audit log.

Fenced like every other write of an attempt: a line from an attempt that was taken away (reclaimed,
timed out, cancelled) is dropped, so the event log never shows a zombie talking over its successor.
A log line is not a state transition: `engine verify` ignores it.
"""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine.store.errors import translated
from engine.store.notify import notify_after_commit

_STEP_LOG = """
INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
SELECT s.run_id, s.id, %(worker)s, 'step_log', s.attempt, jsonb_build_object('level', %(level)s::text,
                                                                             'message', %(message)s::text)
FROM steps s
WHERE s.id = %(step)s AND s.run_id = %(run)s AND s.attempt = %(attempt)s AND s.status = 'running'
RETURNING id
"""


@translated
def step_log(conn: psycopg.Connection, step_id: int, run_id: UUID, attempt: int, worker: str,
             level: str, message: str) -> bool:
    """Append a `step_log` event for this attempt; False when the attempt no longer holds the step."""
    row = conn.execute(_STEP_LOG, {"step": step_id, "run": run_id, "attempt": attempt, "worker": worker,
                                   "level": level, "message": message}).fetchone()
    if row is not None:
        notify_after_commit(conn, steps_ready=False)  # the insert above is already committed
    return row is not None
