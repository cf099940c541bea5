"""Steps on the queue: claim, heartbeat, record results, release; and run outcome after a change.

Every write to a running step is fenced by (id, attempt, status = 'running'): a worker whose step
was reclaimed or cancelled matches nothing, and its result is recorded as discarded instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from engine.store.errors import translated
from engine.store.notify import notify_after_commit, queue_notify_after_record

# Routing: a worker claims only steps whose tool it offers (`llm_call` steps have no tool and every
# worker runs them). The filter sits in the claim itself, on rows the `steps_ready` index scan
# returns in (run_at, id) order, so pools with disjoint tools share one queue without a claim ever
# taking a step it cannot run. NULL `tools` (tests, tools) means "every tool".
# The routing filter, shared by every claim path (this one, the record's claim, the limited claim in
# provider_limits.py) and by the idle waits' look at the queue.
TOOL_FILTER = "(tool IS NULL OR %(tools)s::text[] IS NULL OR tool = ANY(%(tools)s::text[]))"

_CLAIM = """
WITH picked AS (
    SELECT id FROM steps
    WHERE status = 'ready' AND run_at <= now() AND limit_key IS NULL  -- limited: provider_limits.py
      AND """ + TOOL_FILTER + """
    ORDER BY run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE steps s
    SET status = 'running', attempt = s.attempt + 1, lease_owner = %(worker)s,
        lease_worker_id = %(worker_id)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
        started_at = now()
    FROM picked WHERE s.id = picked.id
    RETURNING s.id, s.run_id, s.name, s.kind, s.tool, s.input, s.attempt, s.attempt_limit,
              s.timeout_seconds, s.backoff_base, s.backoff_max
), started AS (
    INSERT INTO audit_log (run_id, step_id, worker, event, attempt)
    SELECT run_id, id, %(worker)s, 'step_started', attempt FROM claimed ORDER BY id
)
SELECT c.*, coalesce((SELECT jsonb_object_agg(p.name, p.output)
                      FROM step_deps d JOIN steps p ON p.id = d.depends_on
                      WHERE d.step_id = c.id), '{}'::jsonb) AS parents
FROM claimed c
"""

# The planner settings the claim runs under, set once per session on a worker's claim and record
# connections (`step_claim_session`; setting them per recording transaction cost throughput). The
# routing filter makes the planner expect few matching ready rows; with stale statistics (a queue
# table that grew since the last ANALYZE, e.g. a burst on a fresh database) it then preferred a
# bitmap scan of every ready step plus a sort over the ordered `steps_ready` index scan: 8 ms
# instead of 0.04 ms per claim with 20,000 ready steps (measured; tests/integration/test_claim_plan.py
# checks the plan). Both are only discouraged, so a statement that needs a sort still sorts (the
# audit insert's); the penalty that costs it would trigger JIT compilation (0.6 s), hence jit off.
_CLAIM_PLANNER = ("SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true), "
                  "set_config('jit', 'off', true)")

# One statement records a batch of outcomes: successes promote children whose last parent this
# was; failures go back to ready (with backoff) or to dead_letter; results whose fencing token no
# longer matches are audited as discarded.
_RECORD = """
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(ok)s::bool[], %(outputs)s::jsonb[],
                         %(errors)s::text[], %(delays)s::float8[], %(dead)s::bool[])
        AS t(id, attempt, ok, output, error, delay, dead)
), done AS (
    UPDATE steps s
    SET status = 'succeeded', output = i.output, finished_at = now(), last_error = NULL,
        lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    FROM input i
    WHERE i.ok AND s.id = i.id AND s.attempt = i.attempt AND s.status = 'running'
    RETURNING s.id, s.run_id, s.attempt
), failed AS (
    UPDATE steps s
    SET status = CASE WHEN i.dead THEN 'dead_letter' ELSE 'ready' END,
        run_at = now() + make_interval(secs => i.delay), last_error = i.error,
        finished_at = CASE WHEN i.dead THEN now() END,
        lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    FROM input i
    WHERE NOT i.ok AND s.id = i.id AND s.attempt = i.attempt AND s.status = 'running'
    RETURNING s.id, s.run_id, s.attempt, s.status, i.error, i.delay
), promoted AS (
    UPDATE steps c
    SET pending_deps = c.pending_deps - x.n,
        status = CASE WHEN c.pending_deps = x.n THEN 'ready' ELSE c.status END,
        run_at = now()
    FROM (SELECT d.step_id, count(*)::int AS n
          FROM step_deps d JOIN done ON d.depends_on = done.id GROUP BY d.step_id) x
    WHERE c.id = x.step_id AND c.status = 'pending'
    RETURNING c.id, c.run_id, c.status
), discarded AS (
    SELECT s.run_id, s.id, i.attempt, i.ok, s.status AS current_status, s.attempt AS current_attempt
    FROM input i JOIN steps s ON s.id = i.id
    WHERE NOT EXISTS (SELECT 1 FROM done WHERE done.id = i.id)
      AND NOT EXISTS (SELECT 1 FROM failed WHERE failed.id = i.id)
), audit AS (
    INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
    SELECT run_id, step_id, %(worker)s, event, attempt, detail FROM (
        SELECT 1 AS ord, run_id, id AS step_id, 'step_succeeded' AS event, attempt, NULL::jsonb AS detail
        FROM done
        UNION ALL
        SELECT 1, run_id, id,
               CASE WHEN status = 'dead_letter' THEN 'step_dead_lettered' ELSE 'step_retry_scheduled' END,
               attempt,
               CASE WHEN status = 'dead_letter' THEN jsonb_build_object('error', error)
                    ELSE jsonb_build_object('error', error, 'delaySeconds', round(delay::numeric, 3)) END
        FROM failed
        UNION ALL
        SELECT 1, run_id, id, 'step_result_discarded', attempt,
               jsonb_build_object('outcome', CASE WHEN ok THEN 'succeeded' ELSE 'failed' END,
                                  'currentStatus', current_status, 'currentAttempt', current_attempt)
        FROM discarded
        UNION ALL
        SELECT 2, run_id, id, 'step_ready', NULL, NULL FROM promoted WHERE status = 'ready'
    ) rows ORDER BY ord, step_id
)
SELECT (SELECT count(*) FROM promoted WHERE status = 'ready')
       + (SELECT count(*) FROM failed WHERE status = 'ready' AND delay <= 0) AS newly_ready,
       (SELECT count(*) FROM discarded) AS discarded
"""

_LOCK_RUNS = """
SELECT id FROM runs WHERE id = ANY(%(runs)s) AND status = 'running' ORDER BY id FOR NO KEY UPDATE
"""

# A run completes when every step succeeded; it fails when nothing is ready or running and at
# least one step is dead-lettered (pending steps behind it can never become ready).
_FINALIZE_RUNS = """
WITH agg AS (
    SELECT run_id, count(*) AS total,
           count(*) FILTER (WHERE status = 'succeeded') AS ok,
           count(*) FILTER (WHERE status IN ('ready', 'running')) AS active,
           count(*) FILTER (WHERE status = 'dead_letter') AS dead
    FROM steps WHERE run_id = ANY(%(runs)s) GROUP BY run_id
), finished AS (
    UPDATE runs r
    SET status = CASE WHEN agg.ok = agg.total THEN 'completed' ELSE 'failed' END, finished_at = now()
    FROM agg
    WHERE r.id = agg.run_id AND r.status = 'running'
      AND (agg.ok = agg.total OR (agg.active = 0 AND agg.dead > 0))
    RETURNING r.id, r.status, agg.dead
)
INSERT INTO audit_log (run_id, event, detail)
SELECT id, 'run_' || status, CASE WHEN status = 'failed' THEN jsonb_build_object('deadLetters', dead) END
FROM finished ORDER BY id
RETURNING run_id, event
"""

_HEARTBEAT = """
UPDATE steps s SET lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM unnest(%(ids)s::bigint[], %(attempts)s::int[]) AS i(id, attempt)
WHERE s.id = i.id AND s.attempt = i.attempt AND s.status = 'running'
RETURNING s.id
"""

_RELEASE = """
WITH released AS (
    UPDATE steps s
    SET status = 'ready', run_at = now(), attempt_limit = s.attempt_limit + 1,
        lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    FROM unnest(%(ids)s::bigint[], %(attempts)s::int[]) AS i(id, attempt)
    WHERE s.id = i.id AND s.attempt = i.attempt AND s.status = 'running'
    RETURNING s.id, s.run_id, s.attempt
)
INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
SELECT run_id, id, %(worker)s, 'step_reclaimed', attempt,
       jsonb_build_object('reason', %(reason)s::text, 'countsAsAttempt', false)
FROM released ORDER BY id
RETURNING step_id
"""


@dataclass(frozen=True)
class ClaimedStep:
    id: int
    run_id: UUID
    name: str
    kind: str
    tool: str | None
    input: dict[str, Any]
    attempt: int
    attempt_limit: int
    timeout_seconds: float
    backoff_base: float
    backoff_max: float
    parents: dict[str, Any]
    limit_key: str | None = None  # the provider limit that admitted it (limited claims only)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.name}"


@dataclass(frozen=True)
class StepResult:
    """The outcome of one attempt. For a failure, `delay_seconds` is the backoff before the next
    attempt and `dead_letter` says there will be none."""

    step_id: int
    attempt: int
    ok: bool
    output_json: str | None = None  # the output, already JSON-encoded (the worker checked its size)
    error: str | None = None
    delay_seconds: float = 0.0
    dead_letter: bool = False
    run_id: UUID | None = None  # lets the recorder lock and finalize the batch's runs up front
    # The database was unavailable to the tool: not the step's fault, so the worker releases the step
    # without using the attempt instead of recording this result (worker/worker.py).
    give_back: bool = False


@translated
def step_claim_session(conn: psycopg.Connection) -> None:
    """Give a connection that claims (`step_claim`, `step_record_and_claim`) the claim's planner
    settings for its whole session (a worker's claim and record connections, on every connect)."""
    conn.execute(_CLAIM_PLANNER.replace(", true)", ", false)"))


@translated
def step_claim(conn: psycopg.Connection, worker: str, worker_id: int, limit: int,
               lease_seconds: float, tools: list[str] | None = None) -> list[ClaimedStep]:
    """Claim up to `limit` ready steps in one statement; each claim bumps the attempt (the lease token).
    With `tools`, only steps whose tool is in it (or that have none) are claimed. Call
    `step_claim_session` on the connection first (see `_CLAIM_PLANNER`)."""
    if limit <= 0:
        return []
    rows = conn.execute(_CLAIM, {"limit": limit, "worker": worker, "worker_id": worker_id,
                                 "lease": lease_seconds, "tools": tools}).fetchall()
    return [ClaimedStep(**{k: v for k, v in row.items()}) for row in rows]


def _record_params(worker: str, results: list[StepResult]) -> dict:
    return {
        "worker": worker,
        "ids": [r.step_id for r in results],
        "attempts": [r.attempt for r in results],
        "ok": [r.ok for r in results],
        "outputs": [r.output_json if r.ok else None for r in results],
        "errors": [r.error for r in results],
        "delays": [max(0.0, r.delay_seconds) for r in results],
        "dead": [r.dead_letter for r in results],
    }


@dataclass(frozen=True)
class RecordSummary:
    discarded: int
    newly_ready: int


def finalize_runs(conn: psycopg.Connection, run_ids: list[UUID]) -> list[dict]:
    """Complete or fail the given runs if their steps say so. Call inside the transaction that
    changed the steps; the run rows are locked first so two transactions finishing the last two
    steps of a run cannot both miss the completion."""
    if not run_ids:
        return []
    conn.execute(_LOCK_RUNS, {"runs": run_ids})
    return conn.execute(_FINALIZE_RUNS, {"runs": run_ids}).fetchall()


@translated
def step_record_and_claim(conn: psycopg.Connection, worker: str, worker_id: int, results: list[StepResult],
                          limit: int, lease_seconds: float,
                          announce: bool = False,
                          tools: list[str] | None = None) -> tuple[RecordSummary, list[ClaimedStep]]:
    """Record a batch and claim up to `limit` ready steps in the same transaction: a child the batch
    made ready can be claimed at once, and the claim costs no commit of its own. Pipelined: one
    round trip instead of six. The runs a batch can touch are its steps' runs (children belong to
    the same run), so they are locked and finalized without waiting for the record's answer. Lock
    order: steps (the record statement), then runs (`_LOCK_RUNS`), as everywhere else; the claim
    only skips locks. With `announce`, the NOTIFY after the commit rides in the same round trip
    (`queue_notify_after_record`)."""
    if any(r.run_id is None for r in results):
        raise ValueError("step_record_and_claim needs the run id of every result")
    params = _record_params(worker, results)
    runs = sorted({r.run_id for r in results}, key=str)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Inside a caller's transaction (tests compose writes): a savepoint, no wake-up of its own.
        with conn.pipeline(), conn.transaction():
            recorded, claim = _record_statements(conn, worker, worker_id, params, runs, limit, lease_seconds, tools)
        return _record_outcome(recorded, claim)
    # One round trip: BEGIN … COMMIT and the wake-up behind it go out together and are answered at
    # one Sync (psycopg's transaction block would sync before and after its COMMIT). After an
    # error, Postgres skips everything up to the Sync, COMMIT included: the transaction is left
    # failed and is rolled back here; an error after the COMMIT (the wake-up) leaves it committed.
    recorded: psycopg.Cursor | None = None
    claim: psycopg.Cursor | None = None
    try:
        with conn.pipeline() as pipeline:
            conn.execute("BEGIN")
            recorded, claim = _record_statements(conn, worker, worker_id, params, runs, limit, lease_seconds, tools)
            conn.execute("COMMIT")
            if announce:
                queue_notify_after_record(conn, runs)
            pipeline.sync()
    except psycopg.Error:
        status = conn.info.transaction_status
        if status != psycopg.pq.TransactionStatus.IDLE or recorded is None or recorded.pgresult is None:
            if status in (psycopg.pq.TransactionStatus.INERROR, psycopg.pq.TransactionStatus.INTRANS):
                conn.rollback()
            raise
        # Only the wake-up failed: the outcomes are committed; a lost wake-up costs latency.
    return _record_outcome(recorded, claim)


def _record_statements(conn: psycopg.Connection, worker: str, worker_id: int, params: dict, runs: list,
                       limit: int, lease_seconds: float,
                       tools: list[str] | None) -> tuple[psycopg.Cursor, psycopg.Cursor | None]:
    """Queue the record, the runs' lock and finalization, and the claim (pipeline mode)."""
    recorded = conn.execute(_RECORD, params)
    conn.execute(_LOCK_RUNS, {"runs": runs})
    conn.execute(_FINALIZE_RUNS, {"runs": runs})
    claim = conn.execute(_CLAIM, {"limit": limit, "worker": worker, "worker_id": worker_id,
                                  "lease": lease_seconds, "tools": tools}) if limit > 0 else None
    return recorded, claim


def _record_outcome(recorded: psycopg.Cursor, claim: psycopg.Cursor | None) -> tuple[RecordSummary, list[ClaimedStep]]:
    summary = recorded.fetchone()
    claimed = [ClaimedStep(**row) for row in claim.fetchall()] if claim is not None else []
    return RecordSummary(summary["discarded"], summary["newly_ready"]), claimed


@translated
def step_heartbeat(conn: psycopg.Connection, leases: list[tuple[int, int]], lease_seconds: float) -> set[int]:
    """Renew the leases of (step id, attempt); returns the ids still held (the rest were taken away)."""
    if not leases:
        return set()
    rows = conn.execute(_HEARTBEAT, {"ids": [s for s, _ in leases], "attempts": [a for _, a in leases],
                                     "lease": lease_seconds}).fetchall()
    return {row["id"] for row in rows}


@translated
def step_release(conn: psycopg.Connection, worker: str, leases: list[tuple[int, int]],
                 reason: str = "released on shutdown") -> int:
    """Give unfinished steps back (on shutdown, or when the database was unavailable to a tool) so
    another attempt starts at once; the interrupted attempt does not count against the step's budget."""
    if not leases:
        return 0
    with conn.transaction():
        rows = conn.execute(_RELEASE, {"ids": [s for s, _ in leases], "attempts": [a for _, a in leases],
                                       "worker": worker, "reason": reason}).fetchall()
    if rows:
        notify_after_commit(conn, steps_ready=True)
    return len(rows)


# ORDER BY … LIMIT 1, not min(): with the tool filter, min() read every ready step (10 ms at
# 20,000, on every idle turn of every worker), where the ordered walk of steps_ready stops at the
# first step this worker may run (0.04 ms).
_SECONDS_UNTIL_READY = """
SELECT extract(epoch FROM run_at - now())::float8 AS wait FROM steps
WHERE status = 'ready' AND limit_key IS NULL AND """ + TOOL_FILTER + """
ORDER BY run_at, id LIMIT 1
"""


@translated
def step_seconds_until_ready(conn: psycopg.Connection, tools: list[str] | None = None) -> float | None:
    """Seconds until the earliest ready step this worker can run (`tools` as in `step_claim`) becomes
    claimable (a retry waiting out its backoff), by the database's clock; None when nothing is
    ready. Steps of tools it does not offer are not its business: counting them would make a
    worker of another pool spin on a step it can never claim."""
    row = conn.execute(_SECONDS_UNTIL_READY, {"tools": tools}).fetchone()
    return row["wait"] if row else None
