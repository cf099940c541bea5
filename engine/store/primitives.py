"""Storing the agent primitives of a submitted run, and promoting the children of a step that
succeeded outside the record statement (a signalled wait, a wait that timed out with
`onTimeout: continue`, a step reused by a re-run).

`primitives_apply` runs in the submit transaction right after the steps are inserted, and only for
runs that use a primitive: delays become `run_at`, wait steps with no parents start `waiting`, map
steps get their source and their expansion dependency, the run gets its deadline.
"""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine.dag import RunSpec
from engine.primitives import WAIT_KIND
from engine.store.maps import maps_expand

_APPLY = """
WITH spec AS (
    SELECT * FROM unnest(%(names)s::text[], %(delays)s::float8[], %(sources)s::text[], %(max_items)s::int[],
                         %(wait_timeouts)s::float8[], %(on_timeouts)s::text[], %(on_rejects)s::text[])
        AS t(name, delay, source, max_items, wait_timeout, on_timeout, on_reject)
), updated AS (
    UPDATE steps s
    SET delay_seconds = spec.delay, map_source_id = src.id, map_max_items = spec.max_items,
        kind = CASE WHEN spec.source IS NULL THEN s.kind ELSE 'map' END,
        pending_deps = s.pending_deps + CASE WHEN spec.source IS NULL THEN 0 ELSE 1 END,
        wait_timeout_seconds = spec.wait_timeout, wait_on_timeout = spec.on_timeout, wait_on_reject = spec.on_reject,
        status = CASE WHEN s.status = 'ready' AND s.kind = 'wait' THEN 'waiting' ELSE s.status END,
        wait_expires_at = CASE WHEN s.status = 'ready' AND s.kind = 'wait'
                               THEN now() + make_interval(secs => spec.wait_timeout) END,
        run_at = CASE WHEN s.status = 'ready' THEN now() + make_interval(secs => spec.delay) ELSE s.run_at END
    FROM spec LEFT JOIN steps src ON src.run_id = %(run)s AND src.name = spec.source
    WHERE s.run_id = %(run)s AND s.name = spec.name
    RETURNING s.id, s.status, s.wait_expires_at
)
INSERT INTO audit_log (run_id, step_id, event, detail)
SELECT %(run)s, id, 'step_waiting', jsonb_build_object('expiresAt', wait_expires_at)
FROM updated WHERE status = 'waiting' ORDER BY id
"""

# The same promotion as the record statement's, for steps that succeeded some other way.
_PROMOTE = """
WITH promoted AS (
    UPDATE steps c
    SET pending_deps = c.pending_deps - x.n,
        status = CASE WHEN c.pending_deps <> x.n THEN c.status WHEN c.kind = 'wait' THEN 'waiting' ELSE 'ready' END,
        wait_expires_at = CASE WHEN c.pending_deps = x.n AND c.kind = 'wait'
                               THEN now() + make_interval(secs => c.wait_timeout_seconds) END,
        -- a map step's delay is its children's: the collector itself is not delayed
        run_at = now() + make_interval(secs => CASE WHEN c.kind = 'map' THEN 0 ELSE c.delay_seconds END)
    FROM (SELECT d.step_id, count(*)::int AS n FROM step_deps d
          WHERE d.depends_on = ANY(%(ids)s) GROUP BY d.step_id) x
    WHERE c.id = x.step_id AND c.status = 'pending'
    RETURNING c.id, c.run_id, c.status, CASE WHEN c.kind = 'map' THEN 0 ELSE c.delay_seconds END AS delay_seconds,
              c.wait_expires_at
)
INSERT INTO audit_log (run_id, step_id, event, detail)
SELECT run_id, id, event, detail FROM (
    SELECT run_id, id, 'step_ready' AS event,
           CASE WHEN delay_seconds > 0 THEN jsonb_build_object('delaySeconds', delay_seconds) END AS detail
    FROM promoted WHERE status = 'ready'
    UNION ALL
    SELECT run_id, id, 'step_waiting', jsonb_build_object('expiresAt', wait_expires_at)
    FROM promoted WHERE status = 'waiting'
) rows ORDER BY id
RETURNING event
"""


def uses_primitives(spec: RunSpec) -> bool:
    return spec.deadline_seconds is not None or any(
        s.primitives.map_source or s.primitives.delay_seconds or s.kind == WAIT_KIND for s in spec.steps)


def primitives_apply(conn: psycopg.Connection, run_id: UUID, spec: RunSpec) -> None:
    """Store the primitive fields of a just-inserted run (inside its submit transaction)."""
    if not uses_primitives(spec):
        return
    steps = [s for s in spec.steps if s.primitives.map_source or s.primitives.delay_seconds or s.kind == WAIT_KIND]
    conn.execute(_APPLY, {
        "run": run_id, "names": [s.name for s in steps],
        "delays": [s.primitives.delay_seconds for s in steps],
        "sources": [s.primitives.map_source for s in steps],
        "max_items": [s.primitives.max_items for s in steps],
        "wait_timeouts": [s.primitives.wait_timeout_seconds for s in steps],
        "on_timeouts": [s.primitives.wait_on_timeout for s in steps],
        "on_rejects": [s.primitives.wait_on_reject for s in steps],
    })
    if spec.deadline_seconds is not None:
        conn.execute("UPDATE runs SET deadline_at = now() + make_interval(secs => %s) WHERE id = %s",
                     (spec.deadline_seconds, run_id))


def steps_promote_after_success(conn: psycopg.Connection, step_ids: list[int]) -> int:
    """Promote the children of steps that just succeeded and expand the map steps they feed (call
    inside the transaction that made them succeed). Returns the steps made ready."""
    if not step_ids:
        return 0
    rows = conn.execute(_PROMOTE, {"ids": step_ids}).fetchall()
    return sum(1 for r in rows if r["event"] == "step_ready") + maps_expand(conn, step_ids)
