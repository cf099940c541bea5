"""Reclaiming steps from workers that died or stopped renewing their leases.

A dead worker is detected by its liveness lock: if this transaction can take it, no live session
holds it. Reclaiming uses up the attempt (crashes count), so a step that kills its worker every time
is dead-lettered after its budget instead of crashing workers forever.
"""
from __future__ import annotations

import psycopg

from engine.store.errors import translated
from engine.store.notify import notify_after_commit
from engine.store.steps import finalize_runs
from engine.store.workers import LIVENESS_LOCK_CLASS

# Workers that own running steps or still count as running, whose liveness lock is free. A Postgres
# restart drops every lock at once, and live workers need a moment to reconnect and re-take theirs,
# so a free lock is read as death only when that is decidable for the worker (CASE fixes the order
# of evaluation, so no lock is tried otherwise):
# - it took its lock since the postmaster started (registered or re-took it after the restart):
#   a free lock now means its session ended, so it is dead at once;
# - or the restart grace is over;
# - or other workers re-took their locks more than `relock` seconds ago: live workers reconnect
#   within their backoff of each other (worker/connections.py), so one that has not is dead.
_DEAD_WORKERS = """
WITH restart AS (
    SELECT pg_postmaster_start_time() AS at,
           (SELECT min(lock_taken_at) FROM workers
            WHERE lock_taken_at > pg_postmaster_start_time()) AS first_relock
)
SELECT w.id FROM workers w, restart r
WHERE (w.status = 'running'
       OR w.id IN (SELECT lease_worker_id FROM steps WHERE status = 'running'))
  AND CASE WHEN w.lock_taken_at > r.at
                OR now() - r.at > make_interval(secs => %(grace)s)
                OR now() - r.first_relock > make_interval(secs => %(relock)s)
           THEN pg_try_advisory_xact_lock(%(lock_class)s, w.id::int)
           ELSE false END
ORDER BY w.id
"""

_RECLAIM = """
WITH picked AS (
    SELECT id, lease_owner, attempt, attempt_limit, reclaims FROM steps
    WHERE status = 'running' AND {condition}
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), reclaimed AS (
    UPDATE steps s
    SET status = CASE WHEN p.attempt >= p.attempt_limit THEN 'dead_letter' ELSE 'ready' END,
        reclaims = p.reclaims + 1, run_at = now(),
        finished_at = CASE WHEN p.attempt >= p.attempt_limit THEN now() END,
        last_error = CASE WHEN p.attempt >= p.attempt_limit
            THEN format('worker crashed %%s times (last: %%s, %%s)', p.reclaims + 1, p.lease_owner, %(reason)s::text)
            ELSE format('worker %%s lost during attempt %%s (%%s)', p.lease_owner, p.attempt, %(reason)s::text) END,
        lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    FROM picked p WHERE s.id = p.id
    RETURNING s.id, s.run_id, s.status, s.attempt, s.last_error, p.lease_owner
)
INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
SELECT run_id, id, lease_owner, event, attempt, detail FROM (
    SELECT 1 AS ord, run_id, id, lease_owner, 'step_reclaimed' AS event, attempt,
           jsonb_build_object('reason', %(reason)s::text, 'reclaimedBy', %(reaper)s::text) AS detail
    FROM reclaimed
    UNION ALL
    SELECT 2, run_id, id, lease_owner, 'step_dead_lettered', attempt,
           jsonb_build_object('error', last_error)
    FROM reclaimed WHERE status = 'dead_letter'
) rows ORDER BY id, ord
RETURNING run_id, step_id, event
"""

_MARK_LOST = """
WITH lost AS (
    UPDATE workers SET status = 'lost'
    WHERE id = ANY(%(ids)s) AND status = 'running'
    RETURNING id, name
)
INSERT INTO audit_log (worker, event, detail)
SELECT name, 'worker_lost', jsonb_build_object('incarnation', id, 'reclaimedBy', %(reaper)s::text)
FROM lost ORDER BY id
"""


@translated
def reclaim_dead_workers(conn: psycopg.Connection, reaper: str, restart_grace_seconds: float,
                         relock_seconds: float) -> int:
    """Reclaim the running steps of every worker whose liveness lock is free. Returns steps reclaimed.

    Cheap when idle: one statement in its own implicit transaction (the locks it tries are gone
    when it ends); only when it finds a dead worker does the reclaim transaction run, and it tries
    the locks again inside. Also marks idle dead workers lost, so the workers list stays true.
    """
    params = {"grace": restart_grace_seconds, "relock": relock_seconds, "lock_class": LIVENESS_LOCK_CLASS}
    if not conn.execute(_DEAD_WORKERS, params).fetchall():
        return 0
    with conn.transaction():
        dead = [r["id"] for r in conn.execute(_DEAD_WORKERS, params).fetchall()]
        if not dead:
            return 0
        rows = conn.execute(_RECLAIM.format(condition="lease_worker_id = ANY(%(dead)s)"),
                            {"dead": dead, "reason": "worker died", "reaper": reaper}).fetchall()
        conn.execute(_MARK_LOST, {"ids": dead, "reaper": reaper})
        _finalize(conn, rows)
    notify_after_commit(conn, steps_ready=bool(rows))  # worker_lost rows were written in any case
    return sum(1 for r in rows if r["event"] == "step_reclaimed")


@translated
def reclaim_expired_leases(conn: psycopg.Connection, reaper: str) -> int:
    """Reclaim running steps whose lease ran out (a stuck or cut-off worker whose session lives on)."""
    if not conn.execute("SELECT 1 FROM steps WHERE status = 'running' AND lease_expires_at < now() LIMIT 1").fetchone():
        return 0  # the usual case, in one round trip instead of a transaction's three
    with conn.transaction():
        rows = conn.execute(_RECLAIM.format(condition="lease_expires_at < now()"),
                            {"reason": "lease expired", "reaper": reaper}).fetchall()
        _finalize(conn, rows)
    if rows:
        notify_after_commit(conn, steps_ready=True)
    return sum(1 for r in rows if r["event"] == "step_reclaimed")


def _finalize(conn: psycopg.Connection, rows: list[dict]) -> None:
    """Fail the runs whose step the reclaim dead-lettered (inside the reclaim's transaction)."""
    finalize_runs(conn, sorted({r["run_id"] for r in rows if r["event"] == "step_dead_lettered"}))
