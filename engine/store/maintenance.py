"""Housekeeping for a long-lived (public) installation: prune finished runs past their retention,
with their steps, edges and notifications (ON DELETE CASCADE) and their audit rows (deleted here:
the audit log has no foreign key, see migrations/0003), and old worker rows."""
from __future__ import annotations

import psycopg

from engine.store.errors import translated

PRUNE_LOCK_KEY = 7_341_003  # one pruner at a time across all workers
PRUNE_BATCH = 200

_PRUNE_RUNS = """
WITH old AS (
    SELECT id FROM runs
    WHERE finished_at < now() - make_interval(secs => %(seconds)s)
    ORDER BY finished_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), audit AS (
    DELETE FROM audit_log a USING old WHERE a.run_id = old.id
)
DELETE FROM runs r USING old WHERE r.id = old.id
"""

_PRUNE_OTHERS = (
    "DELETE FROM audit_log WHERE run_id IS NULL AND created_at < now() - make_interval(secs => %(seconds)s)",
    "DELETE FROM workers WHERE status <> 'running' AND last_seen < now() - make_interval(secs => %(seconds)s)",
    "DELETE FROM rate_limits WHERE window_start < now() - interval '1 hour'",
)


@translated
def runs_prune(conn: psycopg.Connection, retention_hours: float, batch: int = PRUNE_BATCH) -> int:
    """Delete up to `batch` finished runs older than the retention (and old worker rows). Returns
    the number of runs deleted; 0 when another process is pruning or retention is 0 (keep all)."""
    if retention_hours <= 0:
        return 0
    params = {"seconds": retention_hours * 3600, "batch": batch}
    with conn.transaction():
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (PRUNE_LOCK_KEY,)).fetchone()
        if not got["got"]:
            return 0
        deleted = conn.execute(_PRUNE_RUNS, params).rowcount
        for statement in _PRUNE_OTHERS:
            conn.execute(statement, params)
    return deleted
