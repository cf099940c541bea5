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
from engine.store.maps import EXPAND_MAPS, ready_count
from engine.store.notify import RECORD_READY_SETTING, notify_after_commit, queue_notify_after_record

# Routing: a worker claims only steps whose tool it offers (`llm_call` steps have no tool and every
# worker runs them). The filter sits in the claim itself, on rows the `steps_ready` index scan
# returns in (run_at, id) order, so pools with disjoint tools share one queue without a claim ever
# taking a step it cannot run. NULL `tools` (tests, tools) means "every tool".
# The routing filter, shared by every claim path (this one, the record's claim, the limited claim in
# provider_limits.py) and by the idle waits' look at the queue.
TOOL_FILTER = "(tool IS NULL OR %(tools)b::text[] IS NULL OR tool = ANY(%(tools)b::text[]))"

CLAIM_RESULT = """), run_outputs AS (  -- once per run of the batch, not once per step
    -- A correlated subquery per run, so it is an index scan of that run's steps whatever the
    -- planner thinks of the table (as a join it became a scan of every step on small tables).
    SELECT r.run_id, (SELECT sum(pg_column_size(o.output))::bigint FROM steps o
                      WHERE o.run_id = r.run_id AND o.output IS NOT NULL) AS bytes
    FROM (SELECT DISTINCT run_id FROM claimed) r
)
SELECT c.*, CASE WHEN pp.bytes > %(parent_bytes)s THEN NULL ELSE coalesce(pp.outputs, '{}'::jsonb) END AS parents,
       coalesce(pp.bytes, 0) AS parents_bytes, coalesce(ro.bytes, 0) AS run_output_bytes,
       fm.id IS NOT NULL AS feeds_map
FROM claimed c
LEFT JOIN run_outputs ro ON ro.run_id = c.run_id
LEFT JOIN LATERAL (SELECT jsonb_object_agg(p.name, p.output) AS outputs,
                          sum(octet_length(p.output::text))::bigint AS bytes
                   FROM step_deps d JOIN steps p ON p.id = d.depends_on
                   WHERE d.step_id = c.id) pp ON true
-- A probe of the small partial index steps_map_source per claimed step (as EXISTS it was hashed:
-- a scan of every step per claim).
LEFT JOIN LATERAL (SELECT m.id FROM steps m WHERE m.map_source_id = c.id LIMIT 1) fm ON true
"""
# What both claims do with the steps they picked: bump the attempt, lease them, audit the start, and
# return each with its parents' outputs. The parents' outputs are the handler's input: over
# `parent_bytes` in all (as JSON text) they are not sent at all (parents is NULL, parents_bytes says
# how much) and the worker fails the step saying so, so a worker never loads more than the limit for
# one step (README: memory). run_output_bytes is what the run's outputs already take on disk, for
# MAX_RUN_OUTPUT_BYTES (README: disk). Steps with a limit key are claimed by provider_limits.py,
# whose statement ends with the same CLAIM_RESULT.
_CLAIM_PICKED = """), claimed AS (
    UPDATE steps s
    SET status = 'running', attempt = s.attempt + 1, lease_owner = %(worker)s,
        lease_worker_id = %(worker_id)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
        started_at = now()
    -- By primary key (an index scan) rather than a join the planner hashed over every step.
    WHERE s.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING s.id, s.run_id, s.name, s.kind, s.tool, s.input, s.attempt, s.attempt_limit,
              s.timeout_seconds, s.backoff_base, s.backoff_max
), started AS (
    INSERT INTO audit_log (run_id, step_id, worker, event, attempt)
    SELECT run_id, id, %(worker)s, 'step_started', attempt FROM claimed ORDER BY id
""" + CLAIM_RESULT

_CLAIM = """
WITH picked AS (
    SELECT id FROM steps
    WHERE status = 'ready' AND run_at <= now() AND limit_key IS NULL  -- limited: provider_limits.py
      AND """ + TOOL_FILTER + """
    ORDER BY run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
""" + _CLAIM_PICKED

# The web clients at MAX_RUNNING_STEPS_PER_CLIENT right now (from the partial index
# steps_running_client, migration 0009): their ready steps are not claimable. Shared by the idle
# wait and the limited claim (provider_limits.py); the capped claim below counts per client itself,
# since it also needs each client's number.
CLIENTS_AT_CAP = """SELECT client FROM steps WHERE status = 'running' AND client IS NOT NULL
    GROUP BY client HAVING count(*) >= %(client_cap)s"""

# The claim with a cap of running steps per web client (steps.client, copied from runs.client;
# runs submitted elsewhere have none and are not capped), so that no visitor holds more than a
# share of the slots however many long steps they submit. Clients at the cap are skipped in the scan, so another client's step
# behind thousands of theirs is found at once; a client below it gets at most what it has left in
# this batch (the rows locked but not picked stay ready). Two workers claiming at the same moment
# each count the running steps committed before their statement began, so a client can briefly
# hold up to the cap times the number of claiming workers; the next claims then skip it.
_CLAIM_CAPPED = """
WITH running AS (  -- the partial index steps_running_client (migration 0009)
    SELECT s.client, count(*) AS n FROM steps s
    WHERE s.status = 'running' AND s.client IS NOT NULL
    GROUP BY s.client
), locked AS (
    SELECT s.id, s.run_at, s.client FROM steps s
    WHERE s.status = 'ready' AND s.run_at <= now() AND s.limit_key IS NULL
      AND """ + TOOL_FILTER + """
      AND (s.client IS NULL OR s.client NOT IN (SELECT client FROM running WHERE n >= %(client_cap)s))
    ORDER BY s.run_at, s.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT x.id FROM (
        SELECT l.id, l.client, row_number() OVER (PARTITION BY l.client ORDER BY l.run_at, l.id) AS nth
        FROM locked l
    ) x LEFT JOIN running ON running.client = x.client
    WHERE x.client IS NULL OR x.nth + coalesce(running.n, 0) <= %(client_cap)s
""" + _CLAIM_PICKED

# The planner settings the claim runs under: for the session of a worker's claim connection
# (`step_claim_session`), and inside a record transaction just before its claim (the record
# statements before it plan badly under them). The
# routing filter makes the planner expect few matching ready rows; with stale statistics (a queue
# table that grew since the last ANALYZE, e.g. a burst on a fresh database) it then preferred a
# bitmap scan of every ready step plus a sort over the ordered `steps_ready` index scan: 8 ms
# instead of 0.04 ms per claim with 20,000 ready steps (measured; tests/integration/test_claim_plan.py
# checks the plan). Both are only discouraged, so a statement that needs a sort still sorts (the
# audit insert's); the penalty that costs it would trigger JIT compilation (0.6 s), hence jit off.
_CLAIM_PLANNER = ("SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true), "
                  "set_config('jit', 'off', true)")

# Every hot statement is prepared (psycopg prepares a statement after a few executions) and runs
# with its generic plan. Left to choose, Postgres re-planned the claim on every execution (its
# custom plan looked cheaper than the generic one): 1.1 ms of planning per claim of ~30 steps, as
# much as executing it, on every record transaction and so on every hop of a chain (measured with
# pg_stat_statements.track_planning: 325 plans for 323 claims). A generic plan is re-made when
# ANALYZE changes the tables' statistics; tests/integration/test_claim_plan.py checks it walks
# `steps_ready` in order on the claim and on the record connection.
_GENERIC_PLANS = "SELECT set_config('plan_cache_mode', 'force_generic_plan', false)"

# One statement records a batch of outcomes: successes promote children whose last parent this
# was; failures go back to ready (with backoff) or to dead_letter; results whose fencing token no
# longer matches are audited as discarded.
_RECORD = """
WITH raw AS (
    SELECT * FROM unnest(%(ids)b::bigint[], %(attempts)b::int[], %(ok)b::bool[], %(outputs)b::jsonb[],
                         %(errors)b::text[], %(delays)b::float8[], %(dead)b::bool[])
        AS t(id, attempt, ok, output, error, delay, dead)
), input AS (
    -- A success that feeds a map step must carry a list `items` within the map's maxItems, or it is
    -- dead-lettered here, before any child exists (an index probe that finds nothing for most steps).
    SELECT r.id, r.attempt, r.ok AND m.error IS NULL AS ok, r.output, coalesce(m.error, r.error) AS error,
           r.delay, r.dead OR m.error IS NOT NULL AS dead
    FROM raw r LEFT JOIN LATERAL (
        SELECT e.error FROM steps m, LATERAL (SELECT CASE
            WHEN jsonb_typeof(r.output -> 'items') IS DISTINCT FROM 'array'
            THEN format('permanent: map step %%s needs a list in this step''s output field "items"', m.name)
            WHEN jsonb_array_length(r.output -> 'items') > m.map_max_items
            THEN format('permanent: output has %%s items, more than maxItems %%s of map step %%s',
                        jsonb_array_length(r.output -> 'items'), m.map_max_items, m.name) END AS error) e
        WHERE r.ok AND m.map_source_id = r.id AND e.error IS NOT NULL
        ORDER BY m.id LIMIT 1) m ON true
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
        -- a wait step waits for its signal instead; delaySeconds is a durable timer (run_at)
        status = CASE WHEN c.pending_deps <> x.n THEN c.status WHEN c.kind = 'wait' THEN 'waiting' ELSE 'ready' END,
        wait_expires_at = CASE WHEN c.pending_deps = x.n AND c.kind = 'wait'
                               THEN now() + make_interval(secs => c.wait_timeout_seconds) END,
        -- a map step's delay is its children's: the collector itself is not delayed
        run_at = now() + make_interval(secs => CASE WHEN c.kind = 'map' THEN 0 ELSE c.delay_seconds END)
    FROM (SELECT d.step_id, count(*)::int AS n
          FROM step_deps d JOIN done ON d.depends_on = done.id GROUP BY d.step_id) x
    WHERE c.id = x.step_id AND c.status = 'pending'
    RETURNING c.id, c.run_id, c.status, CASE WHEN c.kind = 'map' THEN 0 ELSE c.delay_seconds END AS delay_seconds,
              c.wait_expires_at
), discarded AS (
    SELECT s.run_id, s.id, i.attempt, i.ok, s.status AS current_status, s.attempt AS current_attempt
    FROM input i JOIN steps s ON s.id = i.id
    -- The batch's rows by primary key: as a plain join the planner hashed every step of the table.
    WHERE s.id = ANY (ARRAY(SELECT id FROM input))
      AND NOT EXISTS (SELECT 1 FROM done WHERE done.id = i.id)
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
        SELECT 2, run_id, id, 'step_ready', NULL,
               CASE WHEN delay_seconds > 0 THEN jsonb_build_object('delaySeconds', delay_seconds) END
        FROM promoted WHERE status = 'ready'
        UNION ALL
        SELECT 2, run_id, id, 'step_waiting', NULL, jsonb_build_object('expiresAt', wait_expires_at)
        FROM promoted WHERE status = 'waiting'
    ) rows ORDER BY ord, step_id
)
SELECT (SELECT count(*) FROM promoted WHERE status = 'ready')
       + (SELECT count(*) FROM failed WHERE status = 'ready' AND delay <= 0) AS newly_ready,
       (SELECT count(*) FROM discarded) AS discarded,
       -- for the wake-up after the commit (notify.py): a session setting, kept once committed
       set_config('""" + RECORD_READY_SETTING + """', coalesce((SELECT string_agg(id::text, ',') FROM (
           SELECT id FROM promoted WHERE status = 'ready'
           UNION ALL SELECT id FROM failed WHERE status = 'ready' AND delay <= 0) ready), ''), false) AS ready_ids
"""

_LOCK_RUNS = """
SELECT id FROM runs WHERE id = ANY(%(runs)b::uuid[]) AND status = 'running' ORDER BY id FOR NO KEY UPDATE
"""

# A run completes when every step succeeded; it fails when nothing is ready, running or waiting and at
# least one step is dead-lettered (pending steps behind it can never become ready).
_FINALIZE_RUNS = """
WITH agg AS (
    SELECT run_id, count(*) AS total,
           count(*) FILTER (WHERE status = 'succeeded') AS ok,
           count(*) FILTER (WHERE status IN ('ready', 'running', 'waiting')) AS active,
           count(*) FILTER (WHERE status = 'dead_letter') AS dead
    FROM steps WHERE run_id = ANY(%(runs)b::uuid[]) GROUP BY run_id
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
FROM unnest(%(ids)b::bigint[], %(attempts)b::int[]) AS i(id, attempt)
WHERE s.id = i.id AND s.attempt = i.attempt AND s.status = 'running'
RETURNING s.id
"""

_RELEASE = """
WITH released AS (
    UPDATE steps s
    SET status = 'ready', run_at = now(), attempt_limit = s.attempt_limit + 1,
        lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    FROM unnest(%(ids)b::bigint[], %(attempts)b::int[]) AS i(id, attempt)
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
    parents: dict[str, Any] | None  # None: more than the parent-bytes limit (see CLAIM_RESULT)
    parents_bytes: int = 0
    run_output_bytes: int = 0  # what the run's succeeded steps store, for MAX_RUN_OUTPUT_BYTES
    feeds_map: bool = False  # a map step fans out over this step's output (engine/store/maps.py)
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
    feeds_map: bool = False  # from ClaimedStep: its success must expand a map step
    # The database was unavailable to the tool: not the step's fault, so the worker releases the step
    # without using the attempt instead of recording this result (worker/worker.py).
    give_back: bool = False


def _claim_statement(client_cap: int) -> str:
    return _CLAIM_CAPPED if client_cap > 0 else _CLAIM


PARENT_BYTES_UNLIMITED = 1 << 62


@translated
def step_claim_session(conn: psycopg.Connection) -> None:
    """Give the connection `step_claim` runs on the claim's planner settings and generic plans for
    its whole session (a worker's claim connection, on every connect)."""
    conn.execute(_CLAIM_PLANNER.replace(", true)", ", false)"))
    conn.execute(_GENERIC_PLANS)


@translated
def step_record_session(conn: psycopg.Connection) -> None:
    """Generic plans for the session of the connection `step_record_and_claim` runs on (a worker's
    record connection, on every connect). Not the claim's planner settings: with
    enable_sort/enable_bitmapscan off, the record statements planned badly as the queue grew
    (5,000-run throughput bench: 528 steps/s with them, 5,202 without)."""
    conn.execute(_GENERIC_PLANS)


@translated
def step_claim(conn: psycopg.Connection, worker: str, worker_id: int, limit: int,
               lease_seconds: float, client_cap: int = 0,
               parent_bytes: int = PARENT_BYTES_UNLIMITED, tools: list[str] | None = None) -> list[ClaimedStep]:
    """Claim up to `limit` ready steps in one statement; each claim bumps the attempt (the lease
    token). With `client_cap`, a web client's runs get at most that many running steps; a step
    whose parents' outputs total more than `parent_bytes` comes without them (`parents` None).
    With `tools`, only steps whose tool is in it (or that have none) are claimed. Call
    `step_claim_session` on the connection first (see `_CLAIM_PLANNER`)."""
    if limit <= 0:
        return []
    rows = conn.execute(_claim_statement(client_cap), {"limit": limit, "worker": worker, "worker_id": worker_id,
                                                       "lease": lease_seconds, "client_cap": client_cap,
                                                       "parent_bytes": parent_bytes, "tools": tools}).fetchall()
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
                          announce: bool = False, client_cap: int = 0,
                          parent_bytes: int = PARENT_BYTES_UNLIMITED,
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
            recorded, expanded, claim = _record_statements(conn, worker, worker_id, params, results, runs, limit,
                                                          lease_seconds, client_cap, parent_bytes, tools)
        return _record_outcome(recorded, expanded, claim)
    # One round trip: BEGIN … COMMIT and the wake-up behind it go out together and are answered at
    # one Sync (psycopg's transaction block would sync before and after its COMMIT). After an
    # error, Postgres skips everything up to the Sync, COMMIT included: the transaction is left
    # failed and is rolled back here; an error after the COMMIT (the wake-up) leaves it committed.
    recorded: psycopg.Cursor | None = None
    expanded: psycopg.Cursor | None = None
    claim: psycopg.Cursor | None = None
    try:
        with conn.pipeline() as pipeline:
            conn.execute("BEGIN")
            recorded, expanded, claim = _record_statements(conn, worker, worker_id, params, results, runs, limit,
                                                          lease_seconds, client_cap, parent_bytes, tools)
            conn.execute("COMMIT")
            if announce:
                queue_notify_after_record(conn, runs, maps=expanded is not None)
            pipeline.sync()
    except psycopg.Error:
        status = conn.info.transaction_status
        if status != psycopg.pq.TransactionStatus.IDLE or recorded is None or recorded.pgresult is None:
            if status in (psycopg.pq.TransactionStatus.INERROR, psycopg.pq.TransactionStatus.INTRANS):
                conn.rollback()
            raise
        # Only the wake-up failed: the outcomes are committed; a lost wake-up costs latency.
    return _record_outcome(recorded, expanded, claim)


def _record_statements(conn: psycopg.Connection, worker: str, worker_id: int, params: dict,
                       results: list[StepResult], runs: list, limit: int, lease_seconds: float,
                       client_cap: int, parent_bytes: int,
                       tools: list[str] | None) -> tuple[psycopg.Cursor, psycopg.Cursor | None, psycopg.Cursor | None]:
    """Queue the record, the map expansion, the runs' lock and finalization, and the claim (pipeline mode)."""
    recorded = conn.execute(_RECORD, params)
    # Only a batch with a map source pays for the expansion statement (~0.1 ms of server time).
    sources = [r.step_id for r in results if r.ok and r.feeds_map]
    expanded = conn.execute(EXPAND_MAPS, {"ids": sources}) if sources else None
    conn.execute(_LOCK_RUNS, {"runs": runs})
    conn.execute(_FINALIZE_RUNS, {"runs": runs})
    if limit > 0:
        conn.execute(_CLAIM_PLANNER)  # for the claim only (and whenever its generic plan is re-made)
    claim = conn.execute(_claim_statement(client_cap), {
        "limit": limit, "worker": worker, "worker_id": worker_id, "lease": lease_seconds,
        "client_cap": client_cap, "parent_bytes": parent_bytes, "tools": tools}) if limit > 0 else None
    return recorded, expanded, claim


def _record_outcome(recorded: psycopg.Cursor, expanded: psycopg.Cursor | None,
                    claim: psycopg.Cursor | None) -> tuple[RecordSummary, list[ClaimedStep]]:
    summary = recorded.fetchone()
    mapped = ready_count(expanded.fetchall()) if expanded is not None else 0
    claimed = [ClaimedStep(**row) for row in claim.fetchall()] if claim is not None else []
    return RecordSummary(summary["discarded"], summary["newly_ready"] + mapped), claimed


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

_SECONDS_UNTIL_READY_CAPPED = """
SELECT extract(epoch FROM s.run_at - now())::float8 AS wait
FROM steps s
WHERE s.status = 'ready' AND s.limit_key IS NULL AND """ + TOOL_FILTER + """
  AND (s.client IS NULL OR s.client NOT IN (""" + CLIENTS_AT_CAP + """))
ORDER BY s.run_at, s.id LIMIT 1
"""


@translated
def step_seconds_until_ready(conn: psycopg.Connection, client_cap: int = 0,
                             tools: list[str] | None = None) -> float | None:
    """Seconds until the earliest ready step this worker can run (`tools` as in `step_claim`) becomes
    claimable (a retry waiting out its backoff), by the database's clock; None when nothing is
    ready. Steps with a limit key are not counted: the limited claim has its own wait
    (provider_limits.py). Steps of tools it does not offer, and with `client_cap` the steps of
    clients at their cap, do not count either: it cannot claim them now, and must not spin on them."""
    statement = _SECONDS_UNTIL_READY_CAPPED if client_cap > 0 else _SECONDS_UNTIL_READY
    row = conn.execute(statement, {"client_cap": client_cap, "tools": tools}).fetchone()
    return row["wait"] if row else None
