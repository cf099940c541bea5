"""Hand-off latency: a parent step's completion commit → its child's start, over chains run one at
a time by two idle workers (default settings).

"Start" is when the child's handler runs: every step of the chain is the built-in `notify` tool,
whose handler inserts a row (`notifications.created_at` = `now()` of that insert, i.e. when the
server got it from the running handler). The moment the child was claimed (its `step_started`
audit row) is reported beside it; a worker that claims the child in the parent's own transaction
makes that one zero, which is why the handler is the honest end.

The parent's end is the commit of its `step_succeeded` row. Audit `created_at` is `now()`, the
*start* of the writing transaction, earlier than its commit by the transaction's length; with
`track_commit_timestamp` on we use `pg_xact_commit_timestamp(xmin)` — the moment it committed — and
fall back to `created_at` (which overstates the hand-off) when it is off. One clock: the server's.
"""
from __future__ import annotations

import math

import psycopg

from bench.figures import Figure, collect, percentile
from bench.processes import start_worker, wait_for, wait_workers_registered
from bench.server import BenchServer
from engine.config import Settings
from engine.model import RunStatus
from engine.store import connect
from engine.submit import submit_run

CHAIN_LENGTH = 50  # the default MAX_STEPS_PER_RUN

_HANDOFFS = """
WITH ends AS (
    SELECT (SELECT {ts} FROM audit_log a WHERE a.step_id = d.depends_on AND a.event = 'step_succeeded'
            ORDER BY a.id LIMIT 1) AS parent_done,
           (SELECT {ts} FROM audit_log a WHERE a.step_id = d.step_id AND a.event = 'step_started'
            ORDER BY a.id LIMIT 1) AS child_claimed,
           (SELECT n.created_at FROM notifications n
            WHERE n.idempotency_key = s.run_id::text || ':' || s.name) AS child_running
    FROM step_deps d JOIN steps s ON s.id = d.step_id
    WHERE s.run_id = %s
)
SELECT (extract(epoch FROM child_running - parent_done) * 1000)::float8 AS running_ms,
       (extract(epoch FROM child_claimed - parent_done) * 1000)::float8 AS claimed_ms
FROM ends
"""
COMMIT_TS = "pg_xact_commit_timestamp(a.xmin)"
NOW_TS = "a.created_at"


def chain_body(length: int, index: int) -> dict[str, object]:
    steps = [{"name": f"tool_call.s{i}", "input": {"tool": "notify", "message": "hand-off"},
              **({"dependsOn": [f"tool_call.s{i - 1}"]} if i else {})} for i in range(length)]
    return {"goal": f"bench hand-off chain {index}", "steps": steps}


def measure_handoffs(url: str, handoffs: int, commit_timestamps: bool) -> dict[str, float]:
    """Run ceil(handoffs / 49) chains of 50 one after another; percentiles of all hand-offs."""
    settings = Settings.from_env({})
    names = ["bench-worker-1", "bench-worker-2"]
    workers = [start_worker(url, name) for name in names]
    try:
        wait_workers_registered(url, names, workers)
        running: list[float] = []
        claimed: list[float] = []
        by_now: list[float] = []
        stamp = COMMIT_TS if commit_timestamps else NOW_TS
        with connect(url, application_name="bench-handoff") as conn:
            for index in range(math.ceil(handoffs / (CHAIN_LENGTH - 1))):
                run_id, _ = submit_run(conn, chain_body(CHAIN_LENGTH, index), settings)
                wait_for(lambda r=run_id: _finished(conn, r), 60, f"chain {index} to complete", interval=0.02)
                rows = _handoffs(conn, run_id, stamp)
                running += [r["running_ms"] for r in rows]
                claimed += [r["claimed_ms"] for r in rows]
                by_now += [r["running_ms"] for r in _handoffs(conn, run_id, NOW_TS)] if commit_timestamps else []
    finally:
        for worker in workers:
            worker.stop()
    figures = {"handoff_p50_ms": percentile(running, 50), "handoff_p99_ms": percentile(running, 99),
               "handoff_max_ms": max(running), "handoff_claimed_p50_ms": percentile(claimed, 50),
               "handoff_claimed_p99_ms": percentile(claimed, 99), "handoff_count": float(len(running))}
    if by_now:
        figures.update({"handoff_now_p50_ms": percentile(by_now, 50), "handoff_now_p99_ms": percentile(by_now, 99)})
    return figures


def _finished(conn: psycopg.Connection, run_id: object) -> bool:
    row = conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()
    if row["status"] == RunStatus.FAILED:
        raise RuntimeError(f"hand-off chain {run_id} failed")
    return row["status"] == RunStatus.COMPLETED


def _handoffs(conn: psycopg.Connection, run_id: object, ts: str) -> list[dict]:
    return conn.execute(_HANDOFFS.format(ts=ts), (run_id,)).fetchall()


SPECS = {
    "handoff_p50_ms": ("hand-off p50 (commit → child running)", "ms"),
    "handoff_p99_ms": ("hand-off p99", "ms"),
    "handoff_max_ms": ("hand-off max", "ms"),
    "handoff_claimed_p50_ms": ("hand-off p50 to child claimed", "ms"),
    "handoff_claimed_p99_ms": ("hand-off p99 to child claimed", "ms"),
    "handoff_now_p50_ms": ("hand-off p50, parent end by now()", "ms"),
    "handoff_now_p99_ms": ("hand-off p99, parent end by now()", "ms"),
}


def run_handoff_bench(server: BenchServer, handoffs: int, repeats: int, commit_timestamps: bool) -> list[Figure]:
    samples = []
    for _ in range(repeats):
        url = server.fresh_database("handoff")
        try:
            samples.append(measure_handoffs(url, handoffs, commit_timestamps))
        finally:
            server.drop(url)
    parent = "its commit timestamp" if commit_timestamps else "created_at = now() (commit timestamps off: overstated)"
    count = int(samples[0]["handoff_count"]) if samples else 0
    return collect(samples, SPECS, {"handoff_p50_ms": f"{count} hand-offs per repeat; parent's end: {parent}; "
                                                      "child's start: its handler's first statement"})
