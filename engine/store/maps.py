"""Dynamic fan-out: expanding a map step into one child step per item of its source's output.

A map step (`"map": "<source step>"`) is stored with kind `map` and one extra pending dependency,
its expansion: the source's success alone never makes it ready. `EXPAND_MAPS` runs in the same
transaction that records the source's success (`step_record_and_claim`), so a crash can neither
create the children twice nor lose them. Each child is an ordinary step (`<map name>[i]`, input =
the map step's input plus `item` and `index`, and its provider limit key), retried, reclaimed and fenced like any other; the map
step depends on all of them, and once they have succeeded a worker collects their outputs in item
order (`engine.primitives.collect_map_outputs`).
"""
from __future__ import annotations

import psycopg

# The record statement has already refused a source output without a list `items` or with more
# than maxItems (it dead-letters the source instead), so every source found here is valid.
EXPAND_MAPS = """
WITH src AS (
    SELECT m.id AS map_id, m.run_id, m.name, m.tool, m.input, m.max_attempts, m.timeout_seconds,
           m.backoff_base, m.backoff_max, m.delay_seconds, m.limit_key, m.client, p.id AS source_id, p.output -> 'items' AS items
    FROM steps m JOIN steps p ON p.id = m.map_source_id
    WHERE m.map_source_id = ANY(%(ids)b::bigint[]) AND NOT m.map_expanded AND m.status = 'pending'
      AND p.status = 'succeeded' AND jsonb_typeof(p.output -> 'items') = 'array'
    ORDER BY m.id
    FOR UPDATE OF m
), children AS (
    INSERT INTO steps (run_id, name, kind, tool, input, status, max_attempts, attempt_limit, timeout_seconds,
                       backoff_base, backoff_max, pending_deps, run_at, delay_seconds, map_parent_id, map_index,
                       limit_key, client)
    SELECT src.run_id, src.name || '[' || (e.ord - 1) || ']', split_part(src.name, '.', 1), src.tool,
           src.input || jsonb_build_object('item', e.item, 'index', e.ord - 1), 'ready', src.max_attempts,
           src.max_attempts, src.timeout_seconds, src.backoff_base, src.backoff_max, 0,
           now() + make_interval(secs => src.delay_seconds), src.delay_seconds, src.map_id, (e.ord - 1)::int,
           src.limit_key, src.client
    FROM src, jsonb_array_elements(src.items) WITH ORDINALITY AS e(item, ord)
    ORDER BY src.map_id, e.ord
    RETURNING id, run_id, map_parent_id, delay_seconds
), edges AS (
    INSERT INTO step_deps (step_id, depends_on)
    SELECT c.id, src.source_id FROM children c JOIN src ON src.map_id = c.map_parent_id
    UNION ALL
    SELECT c.map_parent_id, c.id FROM children c
), counts AS (
    SELECT src.map_id, src.run_id, jsonb_array_length(src.items) AS n FROM src
), marked AS (
    -- The expansion dependency is replaced by one dependency per child; no child: ready at once.
    -- The provider limit key passes to the children, which call the provider; the map step itself
    -- only collects their outputs, so it is claimed like an unlimited step.
    UPDATE steps m
    SET map_expanded = true, limit_key = NULL, pending_deps = m.pending_deps - 1 + counts.n,
        status = CASE WHEN m.pending_deps - 1 + counts.n = 0 THEN 'ready' ELSE m.status END, run_at = now()
    FROM counts WHERE m.id = counts.map_id
    RETURNING m.id, m.run_id, m.status, counts.n
), grown AS (
    UPDATE runs r SET step_count = r.step_count + g.n
    FROM (SELECT run_id, sum(n)::int AS n FROM counts GROUP BY run_id) g
    WHERE r.id = g.run_id AND g.n > 0
)
INSERT INTO audit_log (run_id, step_id, event, detail)
SELECT run_id, id, event, detail FROM (
    SELECT 1 AS ord, run_id, id, 'steps_mapped' AS event, jsonb_build_object('count', n) AS detail FROM marked
    UNION ALL
    SELECT 2, run_id, id, 'step_ready',
           CASE WHEN delay_seconds > 0 THEN jsonb_build_object('delaySeconds', delay_seconds) END FROM children
    UNION ALL
    SELECT 3, run_id, id, 'step_ready', NULL FROM marked WHERE status = 'ready'
) rows ORDER BY ord, id
RETURNING event
"""


def ready_count(rows: list[dict]) -> int:
    """Steps made ready by an expansion (from `EXPAND_MAPS`'s returned rows)."""
    return sum(1 for row in rows if row["event"] == "step_ready")


def maps_expand(conn: psycopg.Connection, succeeded_step_ids: list[int]) -> int:
    """Expand the map steps fed by these just-succeeded steps (call inside their transaction).
    Returns the steps made ready."""
    if not succeeded_step_ids:
        return 0
    return ready_count(conn.execute(EXPAND_MAPS, {"ids": succeeded_step_ids}).fetchall())
