"""Reclaiming steps from workers that died or stopped renewing their leases.

A dead worker is detected by its liveness lock: if this transaction can take it, no live session
holds it. Reclaiming uses up the attempt (crashes count), so a step that kills its worker every time
is dead-lettered after its budget instead of crashing workers forever; a crash is charged to the
step that caused it when that is known (see `_RECLAIM`).
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

# `charged` says whether the lost attempt counts against the step's budget. A crash is charged to
# the step that caused it: when a dead worker was running steps with the `crash` knob, only those
# are charged, and its other steps (often other visitors' runs) go back to ready with one attempt
# added to their limit, as a release on shutdown does. With no such step the cause is unknown
# (the Kill button, the OOM killer, a poison pill in a tool), so every step is charged: crashes
# still count, and a real poison pill is still dead-lettered. Expired leases are always charged.
_RECLAIM = """
WITH picked AS (
    SELECT id, lease_owner, lease_worker_id, attempt, attempt_limit, reclaims,
           coalesce(input @> '{{"crash": true}}', false) AS crashes
    FROM steps
    WHERE status = 'running' AND {condition}
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), judged AS (
    SELECT p.*, (p.crashes OR NOT %(spare)s OR NOT bool_or(p.crashes) OVER (PARTITION BY p.lease_worker_id)) AS charged
    FROM picked p
), reclaimed AS (
    UPDATE steps s
    SET status = CASE WHEN j.charged AND j.attempt >= j.attempt_limit THEN 'dead_letter' ELSE 'ready' END,
        reclaims = j.reclaims + CASE WHEN j.charged THEN 1 ELSE 0 END, run_at = now(),
        attempt_limit = j.attempt_limit + CASE WHEN j.charged THEN 0 ELSE 1 END,
        finished_at = CASE WHEN j.charged AND j.attempt >= j.attempt_limit THEN now() END,
        last_error = CASE
            WHEN NOT j.charged
            THEN format('worker %%s lost during attempt %%s (%%s; charged to the crash step it was running, not to this one)',
                        j.lease_owner, j.attempt, %(reason)s::text)
            WHEN j.attempt >= j.attempt_limit
            THEN format('worker crashed %%s times (last: %%s, %%s)', j.reclaims + 1, j.lease_owner, %(reason)s::text)
            ELSE format('worker %%s lost during attempt %%s (%%s)', j.lease_owner, j.attempt, %(reason)s::text) END,
        lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    FROM judged j WHERE s.id = j.id
    RETURNING s.id, s.run_id, s.status, s.attempt, s.last_error, j.lease_owner, j.charged
)
INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
SELECT run_id, id, lease_owner, event, attempt, detail FROM (
    SELECT 1 AS ord, run_id, id, lease_owner, 'step_reclaimed' AS event, attempt,
           jsonb_build_object('reason', %(reason)s::text, 'reclaimedBy', %(reaper)s::text,
                              'countsAsAttempt', charged) AS detail
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
                            {"dead": dead, "reason": "worker died", "reaper": reaper, "spare": True}).fetchall()
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
                            {"reason": "lease expired", "reaper": reaper, "spare": False}).fetchall()
        _finalize(conn, rows)
    if rows:
        notify_after_commit(conn, steps_ready=True)
    return sum(1 for r in rows if r["event"] == "step_reclaimed")


def _finalize(conn: psycopg.Connection, rows: list[dict]) -> None:
    """Fail the runs whose step the reclaim dead-lettered (inside the reclaim's transaction)."""
    finalize_runs(conn, sorted({r["run_id"] for r in rows if r["event"] == "step_dead_lettered"}))
