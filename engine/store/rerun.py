"""Re-running a finished run from one of its steps: reading the source run as it was submitted,
and storing the new run with the outputs of the steps it reuses copied, not re-executed.

The new run is an ordinary run (its own id, steps, deadline and cancel) that carries
`source_run_id`; a reused step is stored `succeeded` with the source's output and audited as
`step_reused`, and its children are promoted in the same transaction.
"""
from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg

from engine.dag import RunSpec
from engine.errors import NotFound
from engine.model import RunLinks, RunStatus, SourceRun, SourceStep, StepStatus
from engine.store.errors import translated
from engine.store.ids import as_run_id
from engine.store.notify import notify_after_commit
from engine.store.primitives import steps_promote_after_success
from engine.store.runs import run_insert
from engine.store.steps import finalize_runs


@translated
def rerun_source(conn: psycopg.Connection, run_id: UUID | str) -> SourceRun:
    """The run's steps as submitted (a map step's children are left out: a re-run expands anew)."""
    run_id = as_run_id(run_id)
    run = conn.execute("SELECT id, goal, status, extract(epoch FROM deadline_at - created_at)::float8 AS deadline "
                       "FROM runs WHERE id = %s", (run_id,)).fetchone()
    if run is None:
        raise NotFound(f"no run {run_id}")
    rows = conn.execute(
        """
        SELECT s.name, s.input, s.max_attempts, s.timeout_seconds, s.backoff_base, s.backoff_max,
               s.delay_seconds, src.name AS map_source, s.map_max_items AS max_items, s.status, s.output,
               coalesce(s.limit_key, (SELECT c.limit_key FROM steps c WHERE c.map_parent_id = s.id
                                      ORDER BY c.id LIMIT 1)) AS limit_key,
               coalesce((SELECT array_agg(p.name ORDER BY p.id) FROM step_deps d JOIN steps p ON p.id = d.depends_on
                         WHERE d.step_id = s.id AND p.map_parent_id IS NULL), '{}') AS depends_on
        FROM steps s LEFT JOIN steps src ON src.id = s.map_source_id
        WHERE s.run_id = %s AND s.map_parent_id IS NULL ORDER BY s.id
        """, (run_id,)).fetchall()
    steps = tuple(SourceStep(**{**row, "depends_on": tuple(row["depends_on"]), "status": StepStatus(row["status"])})
                  for row in rows)
    budget = conn.execute("SELECT tokens, usd::float8 AS usd FROM run_budgets WHERE run_id = %s", (run_id,)).fetchone()
    budget_body = {k: v for k, v in budget.items() if v is not None} if budget else None
    return SourceRun(run["id"], run["goal"], RunStatus(run["status"]), run["deadline"], steps, budget_body)


_REUSE = """
WITH given AS (
    SELECT * FROM unnest(%(names)s::text[], %(outputs)s::jsonb[]) AS t(name, output)
), reused AS (
    UPDATE steps s
    SET status = 'succeeded', output = given.output, finished_at = now(), pending_deps = 0,
        wait_expires_at = NULL, map_expanded = s.map_source_id IS NOT NULL
    FROM given WHERE s.run_id = %(run)s AND s.name = given.name
    RETURNING s.id
)
INSERT INTO audit_log (run_id, step_id, event, detail)
SELECT %(run)s, id, 'step_reused', jsonb_build_object('sourceRunId', %(source)s::text) FROM reused ORDER BY id
RETURNING step_id
"""


@translated
def rerun_insert(conn: psycopg.Connection, spec: RunSpec, source_run_id: UUID, from_step: str,
                 reused: dict[str, Any], client: str | None = None, max_active: int = 0,
                 max_active_per_client: int = 0) -> UUID:
    """Store the re-run `spec` in one transaction, with the steps named in `reused` (name → the
    source's output) already succeeded. Returns the new run's id."""
    with conn.transaction():
        run_id, _ = run_insert(conn, spec, client=client, max_active=max_active,
                               max_active_per_client=max_active_per_client)
        conn.execute("UPDATE runs SET source_run_id = %s WHERE id = %s", (source_run_id, run_id))
        conn.execute("INSERT INTO audit_log (run_id, event, detail) VALUES (%s, 'run_rerun', "
                     "jsonb_build_object('sourceRunId', %s::text, 'fromStep', %s::text, 'reused', %s::int))",
                     (run_id, str(source_run_id), from_step, len(reused)))
        rows = conn.execute(_REUSE, {"run": run_id, "source": str(source_run_id), "names": list(reused),
                                     "outputs": [json.dumps(v) for v in reused.values()]}).fetchall()
        steps_promote_after_success(conn, [r["step_id"] for r in rows])
        finalize_runs(conn, [run_id])
    notify_after_commit(conn, steps_ready=True)
    return run_id


def run_links(conn: psycopg.Connection, run_id: UUID | str) -> RunLinks:
    """The run's source run (if it is a re-run), its re-runs, its deadline and why it ended."""
    run_id = as_run_id(run_id)
    row = conn.execute("SELECT source_run_id, deadline_at, end_reason FROM runs WHERE id = %s", (run_id,)).fetchone()
    if row is None:
        raise NotFound(f"no run {run_id}")
    reruns = conn.execute("SELECT id FROM runs WHERE source_run_id = %s ORDER BY created_at", (run_id,)).fetchall()
    return RunLinks(row["source_run_id"], tuple(r["id"] for r in reruns), row["deadline_at"], row["end_reason"])
