"""Run deadlines (`deadlineSeconds`), enforced by the database's clock from every worker's reaper.

At the deadline the run ends `failed` with reason `deadline`: its unfinished steps (pending, ready,
running, waiting) are cancelled in the same transaction. A handler still running sees
`ctx.cancelled` at its worker's next heartbeat (the fenced lease renewal matches nothing), and its
late result is discarded by fencing and audited as `step_result_discarded`.
"""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine.store.errors import translated
from engine.store.notify import notify_after_commit

_DUE = """
SELECT id FROM runs WHERE status = 'running' AND deadline_at <= now() ORDER BY deadline_at LIMIT %(limit)s
"""

# Steps first, then the run: the lock order of recording results and of cancel.
_CANCEL_STEPS = """
WITH cancelled AS (
    UPDATE steps SET status = 'cancelled', finished_at = now(), wait_expires_at = NULL,
           lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    WHERE run_id = %(run)s AND status IN ('pending', 'ready', 'running', 'waiting')
    RETURNING id, attempt
)
INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
SELECT %(run)s, id, %(reaper)s, 'step_cancelled', attempt, '{"reason": "deadline"}'::jsonb FROM cancelled ORDER BY id
RETURNING step_id
"""

_FAIL_RUN = """
WITH failed AS (
    UPDATE runs SET status = 'failed', end_reason = 'deadline', finished_at = now()
    WHERE id = %(run)s AND status = 'running' AND deadline_at <= now()
    RETURNING id, deadline_at
)
INSERT INTO audit_log (run_id, worker, event, detail)
SELECT id, %(reaper)s, event, detail FROM failed, LATERAL (VALUES
    (1, 'run_deadline_exceeded', jsonb_build_object('deadlineAt', deadline_at, 'stepsCancelled', %(cancelled)s::int)),
    (2, 'run_failed', jsonb_build_object('reason', 'deadline'))) AS e(ord, event, detail)
ORDER BY ord
RETURNING id
"""

DUE_BATCH = 100


@translated
def runs_expire_deadlines(conn: psycopg.Connection, reaper: str) -> int:
    """Fail every running run past its deadline; returns the runs failed."""
    due = [row["id"] for row in conn.execute(_DUE, {"limit": DUE_BATCH}).fetchall()]
    return sum(_fail_at_deadline(conn, run_id, reaper) for run_id in due)


def _fail_at_deadline(conn: psycopg.Connection, run_id: UUID, reaper: str) -> int:
    ended: list = []
    with conn.transaction():
        cancelled = conn.execute(_CANCEL_STEPS, {"run": run_id, "reaper": reaper}).fetchall()
        ended = conn.execute(_FAIL_RUN, {"run": run_id, "reaper": reaper, "cancelled": len(cancelled)}).fetchall()
        if not ended:  # it finished (or was cancelled) meanwhile: leave its steps alone
            raise psycopg.Rollback()
    if not ended:
        return 0
    notify_after_commit(conn, steps_ready=False)
    return 1


_ANY_DUE = """
SELECT EXISTS (SELECT 1 FROM steps WHERE status = 'waiting' AND wait_expires_at <= now()) AS waits,
       EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND deadline_at <= now()) AS deadlines
"""


@translated
def timers_due(conn: psycopg.Connection) -> tuple[bool, bool]:
    """(a wait has timed out, a run is past its deadline): one cheap round trip for idle passes."""
    row = conn.execute(_ANY_DUE).fetchone()
    return row["waits"], row["deadlines"]
