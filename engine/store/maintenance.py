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


# What a run's data costs on disk, as stored: its steps' inputs and outputs (pg_column_size: after
# compression, as they sit in the table or its TOAST) plus a fixed share per step for the step's
# row, its edges and its audit rows (~5 rows of ~100 bytes each, and index entries).
STEP_OVERHEAD_BYTES = 1024

_RUN_SIZES = """
SELECT r.id, r.finished_at,
       sum(pg_column_size(s.input) + coalesce(pg_column_size(s.output), 0) + %(overhead)s)::bigint AS bytes
FROM runs r JOIN steps s ON s.run_id = r.id
GROUP BY r.id
"""

_PRUNE_TO_BUDGET = """
WITH sizes AS (""" + _RUN_SIZES + """), total AS (
    SELECT coalesce(sum(bytes), 0) AS bytes FROM sizes
), oldest AS (
    SELECT id, sum(bytes) OVER (ORDER BY finished_at, id) - bytes AS freed_before
    FROM sizes WHERE finished_at IS NOT NULL
), victims AS (
    SELECT r.id FROM runs r JOIN oldest o ON o.id = r.id, total
    WHERE total.bytes > %(budget)s AND o.freed_before < total.bytes - %(target)s
    ORDER BY o.freed_before LIMIT %(batch)s
    FOR UPDATE OF r SKIP LOCKED
), audit AS (
    DELETE FROM audit_log a USING victims WHERE a.run_id = victims.id
)
DELETE FROM runs r USING victims WHERE r.id = victims.id
"""


@translated
def runs_data_bytes(conn: psycopg.Connection) -> int:
    """The runs' data on disk, as `runs_prune_to_budget` counts it."""
    row = conn.execute("SELECT coalesce(sum(bytes), 0)::bigint AS bytes FROM (" + _RUN_SIZES + ") sizes",
                       {"overhead": STEP_OVERHEAD_BYTES}).fetchone()
    return row["bytes"]


@translated
def runs_prune_to_budget(conn: psycopg.Connection, budget_bytes: int, batch: int = PRUNE_BATCH) -> int:
    """When the runs' data passes `budget_bytes`, delete the oldest finished runs (whatever their
    age) until it is back to 90 % of it, up to `batch` runs per call. Active runs are never touched:
    MAX_ACTIVE_RUNS × MAX_RUN_OUTPUT_BYTES bounds them. Deleted rows free space that Postgres reuses,
    so the files stop growing. Returns the runs deleted; 0 when another process is pruning."""
    if budget_bytes <= 0:
        return 0
    with conn.transaction():
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (PRUNE_LOCK_KEY,)).fetchone()
        if not got["got"]:
            return 0
        return conn.execute(_PRUNE_TO_BUDGET, {"overhead": STEP_OVERHEAD_BYTES, "budget": budget_bytes,
                                               "target": int(budget_bytes * 0.9), "batch": batch}).rowcount
