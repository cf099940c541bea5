"""Runs: submit (validated spec → rows, one transaction), read (as `Run`/`RunSummary` records),
list, cancel; and redrive of a dead-lettered step, which re-opens its run."""
from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg

from engine.dag import RunSpec
from engine.errors import Conflict, NotFound, RateLimited
from engine.model import Run, RunStatus, RunSummary, Step, StepStatus
from engine.primitives import WAIT_KIND
from engine.store.budgets import llm_run_extras
from engine.store.ids import as_run_id
from engine.store.notify import notify_after_commit
from engine.store.primitives import primitives_apply

_INSERT_RUN = """
INSERT INTO runs (goal, idempotency_key, request_hash, client, step_count)
VALUES (%(goal)s, %(key)s, %(hash)s, %(client)s, %(count)s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""

_INSERT_STEPS = """
WITH new_steps AS (
    INSERT INTO steps (run_id, name, kind, tool, input, status, max_attempts, attempt_limit,
                       timeout_seconds, backoff_base, backoff_max, pending_deps, client)
    SELECT %(run)s, name, kind, tool, input, CASE WHEN deps = 0 THEN 'ready' ELSE 'pending' END,
           max_attempts, max_attempts, timeout, base, cap, deps, %(client)s::text
    FROM unnest(%(names)b::text[], %(kinds)b::text[], %(tools)b::text[], %(inputs)b::jsonb[],
                %(max_attempts)b::int[], %(timeouts)b::float8[], %(bases)b::float8[], %(caps)b::float8[],
                %(deps)b::int[]) WITH ORDINALITY
        AS t(name, kind, tool, input, max_attempts, timeout, base, cap, deps, ord)
    ORDER BY ord
    RETURNING id, name, status
), edges AS (
    INSERT INTO step_deps (step_id, depends_on)
    SELECT child.id, parent.id
    FROM unnest(%(edge_children)b::text[], %(edge_parents)b::text[]) AS e(child, parent)
    JOIN new_steps child ON child.name = e.child
    JOIN new_steps parent ON parent.name = e.parent
)
INSERT INTO audit_log (run_id, step_id, event, detail)
SELECT %(run)s, NULL, 'run_created', jsonb_build_object('goal', %(goal)s::text, 'steps', %(count)s::int)
UNION ALL
SELECT * FROM (SELECT %(run)s::uuid, id, 'step_ready', NULL::jsonb FROM new_steps WHERE status = 'ready' ORDER BY id) r
"""


def run_submit(conn: psycopg.Connection, spec: RunSpec, client: str | None = None,
               max_active: int = 0, max_active_per_client: int = 0,
               reserved_for_new_clients: int = 0) -> tuple[UUID, bool]:
    """Store a validated run; returns (run id, created). A repeated idempotency key returns the
    existing run (created=False); the same key with a different body raises Conflict."""
    with conn.transaction():
        run_id, created = run_insert(conn, spec, client, max_active, max_active_per_client,
                                     reserved_for_new_clients)
    if created:
        notify_after_commit(conn, steps_ready=True)
    return run_id, created


def run_insert(conn: psycopg.Connection, spec: RunSpec, client: str | None = None,
               max_active: int = 0, max_active_per_client: int = 0,
               reserved_for_new_clients: int = 0) -> tuple[UUID, bool]:
    """`run_submit` without its transaction and its wake-up, for a caller that stores more in the
    same transaction (a re-run) and notifies after its commit."""
    if spec.idempotency_key:
        existing = _run_by_key(conn, spec)
        if existing:
            return existing, False
    _check_active_caps(conn, client, max_active, max_active_per_client, reserved_for_new_clients)
    row = conn.execute(_INSERT_RUN, {"goal": spec.goal, "key": spec.idempotency_key, "hash": spec.request_hash,
                                     "client": client, "count": len(spec.steps)}).fetchone()
    if row is None:  # a concurrent submission with the same key committed first
        existing = _run_by_key(conn, spec)
        assert existing is not None
        return existing, False
    run_id = row["id"]
    edges = [(s.name, parent) for s in spec.steps for parent in s.depends_on]
    conn.execute(_INSERT_STEPS, {
        "run": run_id, "goal": spec.goal, "count": len(spec.steps), "client": client,
        "names": [s.name for s in spec.steps], "kinds": [s.kind for s in spec.steps],
        "tools": [s.tool for s in spec.steps], "inputs": [json.dumps(s.input) for s in spec.steps],
        "max_attempts": [s.max_attempts for s in spec.steps],
        "timeouts": [s.timeout_seconds for s in spec.steps],
        "bases": [s.backoff_base for s in spec.steps], "caps": [s.backoff_max for s in spec.steps],
        "deps": [len(s.depends_on) for s in spec.steps],
        "edge_children": [c for c, _ in edges], "edge_parents": [p for _, p in edges],
    })
    primitives_apply(conn, run_id, spec)
    llm_run_extras(conn, run_id, spec)  # limit keys and budget
    return run_id, True


def _run_by_key(conn: psycopg.Connection, spec: RunSpec) -> UUID | None:
    row = conn.execute("SELECT id, request_hash FROM runs WHERE idempotency_key = %s",
                       (spec.idempotency_key,)).fetchone()
    if row is None:
        return None
    if row["request_hash"] != spec.request_hash:
        # The other run may be another visitor's: its id is not ours to give away.
        raise Conflict(f"idempotency key {spec.idempotency_key!r} was already used for a different run")
    return row["id"]


# Submissions that check the active-run caps take this transaction-level lock first, so counting
# and inserting are one step: two concurrent submits cannot both see room for one more run. It is
# held until the submit commits (a few milliseconds); runs submitted without caps never take it.
ACTIVE_CAPS_LOCK = (7_341_013, 0)


def _check_active_caps(conn: psycopg.Connection, client: str | None, max_active: int, per_client: int,
                       reserved: int) -> None:
    """Raise RateLimited when this submission would pass a cap. The last `reserved` places of
    `max_active` are kept for clients with no active run, so a few busy clients cannot lock out
    everyone else."""
    if not max_active and not (per_client and client):
        return
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", ACTIVE_CAPS_LOCK)
    # A new statement after the lock: under READ COMMITTED it sees every run committed before.
    row = conn.execute("SELECT count(*) AS total, count(*) FILTER (WHERE client = %s) AS mine "
                       "FROM runs WHERE status = 'running'", (client,)).fetchone()
    total, mine = row["total"], row["mine"] if client else 0
    if max_active and total >= max_active:
        raise RateLimited(f"{total} runs are active, the limit is {max_active}; try again when some finish", 5)
    if max_active and mine and reserved and total >= max_active - reserved:
        raise RateLimited(f"{total} runs are active; the last {reserved} places of {max_active} are kept for "
                          "visitors with no active run; try again when yours finish", 5)
    if per_client and client and mine >= per_client:
        raise RateLimited(f"you have {mine} active runs, the limit is {per_client}; try again when some finish", 5)


_SELECT_STEPS = """
SELECT s.id, s.run_id, s.name, s.kind, s.tool, s.status, s.attempt, s.max_attempts, s.attempt_limit,
       s.input, s.output, s.last_error, s.reclaims, s.lease_owner, s.run_at, s.started_at, s.finished_at,
       coalesce((SELECT array_agg(p.name ORDER BY p.id) FROM step_deps d JOIN steps p ON p.id = d.depends_on
                 WHERE d.step_id = s.id), '{}') AS depends_on
FROM steps s
"""


def run_get(conn: psycopg.Connection, run_id: UUID | str) -> Run:
    """The run and all of its steps; NotFound for an unknown (or malformed) id."""
    run_id = as_run_id(run_id)
    run = conn.execute("SELECT id, goal, status, idempotency_key, created_at, finished_at, source_run_id, "
                       "deadline_at, end_reason FROM runs WHERE id = %s", (run_id,)).fetchone()
    if run is None:
        raise NotFound(f"no run {run_id}")
    steps = conn.execute(_SELECT_STEPS + " WHERE s.run_id = %s ORDER BY s.id", (run_id,)).fetchall()
    return Run(id=run["id"], goal=run["goal"], status=RunStatus(run["status"]),
               idempotency_key=run["idempotency_key"], created_at=run["created_at"],
               finished_at=run["finished_at"], steps=tuple(_step_from_row(s) for s in steps),
               source_run_id=run["source_run_id"], deadline_at=run["deadline_at"], end_reason=run["end_reason"])


def steps_by_id(conn: psycopg.Connection, step_ids: list[int]) -> dict[int, Step]:
    """The given steps (of any runs), by id; ids that no longer exist are left out."""
    if not step_ids:
        return {}
    rows = conn.execute(_SELECT_STEPS + " WHERE s.id = ANY(%s)", (step_ids,)).fetchall()
    return {row["id"]: _step_from_row(row) for row in rows}


def _step_from_row(row: dict[str, Any]) -> Step:
    return Step(id=row["id"], run_id=row["run_id"], name=row["name"], kind=row["kind"], tool=row["tool"],
                status=StepStatus(row["status"]), attempt=row["attempt"], max_attempts=row["max_attempts"],
                attempt_limit=row["attempt_limit"], depends_on=tuple(row["depends_on"]), input=row["input"],
                output=row["output"], error=row["last_error"], reclaims=row["reclaims"],
                worker=row["lease_owner"], run_at=row["run_at"], started_at=row["started_at"],
                finished_at=row["finished_at"])


def run_list(conn: psycopg.Connection, limit: int = 20, status: RunStatus | None = None) -> list[RunSummary]:
    """Newest runs first, with step counts by status."""
    rows = conn.execute(
        """
        SELECT r.id, r.goal, r.status, r.created_at, r.finished_at, r.step_count,
               (SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.status = 'succeeded') AS succeeded,
               (SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.status = 'dead_letter') AS dead
        FROM runs r WHERE %(status)s::text IS NULL OR r.status = %(status)s
        ORDER BY r.created_at DESC LIMIT %(limit)s
        """, {"status": status, "limit": limit}).fetchall()
    return [RunSummary(id=r["id"], goal=r["goal"], status=RunStatus(r["status"]), created_at=r["created_at"],
                       finished_at=r["finished_at"], step_count=r["step_count"], succeeded=r["succeeded"],
                       dead=r["dead"]) for r in rows]


def run_cancel(conn: psycopg.Connection, run_id: UUID | str, by: str | None = None) -> int:
    """Cancel a running run: its unfinished steps become cancelled (a running step's late result
    is then discarded by fencing). Returns the number of steps cancelled."""
    run_id = as_run_id(run_id)
    with conn.transaction():
        # Steps first, then the run: the same lock order as recording results.
        steps = conn.execute(
            """
            WITH cancelled AS (
                UPDATE steps SET status = 'cancelled', finished_at = now(),
                       lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
                WHERE run_id = %(run)s AND status IN ('pending', 'ready', 'running', 'waiting')
                  AND EXISTS (SELECT 1 FROM runs WHERE id = %(run)s AND status = 'running')
                RETURNING id, attempt
            )
            INSERT INTO audit_log (run_id, step_id, worker, event, attempt)
            SELECT %(run)s, id, %(by)s, 'step_cancelled', attempt FROM cancelled ORDER BY id
            RETURNING id
            """, {"run": run_id, "by": by}).fetchall()
        run = conn.execute("UPDATE runs SET status = 'cancelled', finished_at = now() "
                           "WHERE id = %s AND status = 'running' RETURNING id", (run_id,)).fetchone()
        if run is None:
            current = conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()
            if current is None:
                raise NotFound(f"no run {run_id}")
            raise Conflict(f"run {run_id} is already {current['status']}")
        conn.execute("INSERT INTO audit_log (run_id, worker, event) VALUES (%s, %s, 'run_cancelled')", (run_id, by))
    notify_after_commit(conn, steps_ready=False)
    return len(steps)


def step_redrive(conn: psycopg.Connection, step_id: int, by: str | None = None) -> UUID:
    """Give a dead-lettered step a fresh budget of attempts and make it ready; re-open its run.
    Steps that succeeded are untouched, so the run resumes from the failed step."""
    with conn.transaction():
        row = conn.execute(
            """
            UPDATE steps s SET status = 'ready', attempt_limit = s.attempt + s.max_attempts, run_at = now(),
                   finished_at = NULL
            FROM runs r
            WHERE s.id = %s AND s.status = 'dead_letter' AND s.kind <> 'wait' AND r.id = s.run_id
              AND r.status IN ('running', 'failed')
            RETURNING s.id, s.run_id, s.attempt, s.attempt_limit, r.status AS run_status
            """, (step_id,)).fetchone()
        if row is None:
            current = conn.execute("SELECT s.status, s.kind, r.status AS run_status FROM steps s "
                                   "JOIN runs r ON r.id = s.run_id WHERE s.id = %s", (step_id,)).fetchone()
            if current is None:
                raise NotFound(f"no step {step_id}")
            if current["kind"] == WAIT_KIND:  # no worker can resolve a wait; a re-run asks again
                raise Conflict(f"step {step_id} is a wait that was rejected or timed out; re-run from it to ask again")
            if current["status"] != StepStatus.DEAD_LETTER:
                raise Conflict(f"step {step_id} is {current['status']}, only a dead-lettered step can be redriven")
            raise Conflict(f"step {step_id} belongs to a {current['run_status']} run")
        reopened = row["run_status"] == RunStatus.FAILED
        if reopened:
            conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = %s", (row["run_id"],))
        conn.execute(
            "INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail) "
            "VALUES (%s, %s, %s, 'step_redriven', %s, jsonb_build_object('runReopened', %s::bool, 'attemptLimit', %s::int))",
            (row["run_id"], step_id, by, row["attempt"], reopened, row["attempt_limit"]))
    notify_after_commit(conn, steps_ready=True)
    return row["run_id"]


def run_ids(conn: psycopg.Connection, status: RunStatus | None = None) -> list[str]:
    """Every run id (optionally of one status), oldest first."""
    rows = conn.execute("SELECT id FROM runs WHERE %(status)s::text IS NULL OR status = %(status)s "
                        "ORDER BY created_at", {"status": status}).fetchall()
    return [str(r["id"]) for r in rows]
