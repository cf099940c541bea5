"""Agent-shaped latency: what a chain of steps costs between its steps, and DBOS in the same run.

- `chain_hop_p50_ms` / `chain_hop_p99_ms`: 20-step chains of no-op `transform` steps, run one at a
  time by two idle workers (default settings). A hop is a parent handler's end → its child
  handler's start, by the workers' own wall clocks (`STEP_STAMPS_FILE`: both workers run on this
  machine, so one clock). It contains everything between two handlers: recording the parent
  (one durable commit), making the child ready, claiming it, and starting its handler.
- `chain20_p50_ms`: the same chains, submit → `run_completed`, from the commit timestamps of the
  `run_created` and `run_completed` audit rows (`created_at` = `now()` when commit timestamps are
  off, which understates the span by the submit transaction's length).
- `agent_dag_p50_ms`: a 7-step agent DAG — four parallel 20 ms fetches (`sleep` 0.02 s) → merge →
  LLM (the offline model) → notify — submit → `run_completed`, the same way. 20 ms of it is work.
- `dbos_step_ms`: DBOS's per-step overhead on a 20-step workflow of no-op steps (see
  `bench.peers.with_dbos`), and `ratio_hop_to_dbos_step` = our hop p50 / that, per repeat.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import psycopg

from bench.figures import Figure, Unavailable, collect, percentile
from bench.processes import start_worker, wait_for, wait_workers_registered
from bench.server import BenchServer
from engine.config import Settings
from engine.model import RunStatus
from engine.store import connect
from engine.submit import submit_run
from worker.stamps import read_stamps

CHAIN_STEPS = 20
FETCH_SECONDS = 0.02

_SPAN = """
SELECT (extract(epoch FROM max({ts}) FILTER (WHERE a.event = 'run_completed')
                          - min({ts}) FILTER (WHERE a.event = 'run_created')) * 1000)::float8 AS ms
FROM audit_log a WHERE a.run_id = %s
"""
COMMIT_TS = "pg_xact_commit_timestamp(a.xmin)"
NOW_TS = "a.created_at"
_EDGES = "SELECT d.step_id, d.depends_on FROM step_deps d JOIN steps s ON s.id = d.step_id WHERE s.run_id = ANY(%s)"


def chain_body(index: int) -> dict[str, Any]:
    steps = [{"name": f"tool_call.s{i}", "input": {"tool": "transform"},
              **({"dependsOn": [f"tool_call.s{i - 1}"]} if i else {})} for i in range(CHAIN_STEPS)]
    return {"goal": f"bench chain {index}", "steps": steps}


def agent_dag_body(index: int) -> dict[str, Any]:
    fetches = [f"tool_call.fetch{i}" for i in range(4)]
    steps: list[dict[str, Any]] = [{"name": name, "input": {"tool": "sleep", "seconds": FETCH_SECONDS}}
                                   for name in fetches]
    steps.append({"name": "tool_call.merge", "input": {"tool": "transform"}, "dependsOn": fetches})
    steps.append({"name": "llm_call.answer", "input": {"prompt": "Summarize the findings"},
                  "dependsOn": ["tool_call.merge"]})
    steps.append({"name": "tool_call.notify", "input": {"tool": "notify"}, "dependsOn": ["llm_call.answer"]})
    return {"goal": f"bench agent dag {index}", "steps": steps}


def _finished(conn: psycopg.Connection, run_id: object) -> bool:
    status = conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()["status"]
    if status == RunStatus.FAILED:
        raise RuntimeError(f"bench run {run_id} failed")
    return status == RunStatus.COMPLETED


def _run_one(conn: psycopg.Connection, body: dict[str, Any], settings: Settings) -> object:
    run_id, _ = submit_run(conn, body, settings)
    wait_for(lambda: _finished(conn, run_id), 60, f"run {run_id} to complete", interval=0.005)
    return run_id


def measure_chains(url: str, chains: int, dags: int, commit_timestamps: bool) -> dict[str, float]:
    """One repeat: `chains` chains, then `dags` agent DAGs, one at a time (each after a warm-up)."""
    settings = Settings.from_env({})
    names = ["bench-worker-1", "bench-worker-2"]
    stamp_dir = Path(tempfile.mkdtemp(prefix="dae-bench-stamps-"))
    files = [stamp_dir / f"{name}.jsonl" for name in names]
    workers = [start_worker(url, name, {"STEP_STAMPS_FILE": str(path)}) for name, path in zip(names, files, strict=True)]
    ts = COMMIT_TS if commit_timestamps else NOW_TS
    try:
        wait_workers_registered(url, names, workers)
        with connect(url, application_name="bench-chains") as conn:
            _run_one(conn, chain_body(-1), settings)
            chain_runs = [_run_one(conn, chain_body(i), settings) for i in range(chains)]
            _run_one(conn, agent_dag_body(-1), settings)
            dag_runs = [_run_one(conn, agent_dag_body(i), settings) for i in range(dags)]
            chain_spans = [conn.execute(_SPAN.format(ts=ts), (r,)).fetchone()["ms"] for r in chain_runs]
            dag_spans = [conn.execute(_SPAN.format(ts=ts), (r,)).fetchone()["ms"] for r in dag_runs]
            edges = conn.execute(_EDGES, (chain_runs,)).fetchall()
    finally:
        for worker in workers:
            worker.stop()  # SIGTERM: each worker writes its stamps as it stops
    stamps: dict[int, tuple[float, float]] = {}
    for path in files:
        if path.exists():
            stamps.update(read_stamps(path))
    hops = [(stamps[e["step_id"]][0] - stamps[e["depends_on"]][1]) * 1000 for e in edges
            if e["step_id"] in stamps and e["depends_on"] in stamps]
    if len(hops) != len(edges):
        raise RuntimeError(f"stamps for {len(hops)} of {len(edges)} hops: a worker did not write its stamps")
    return {"chain_hop_p50_ms": percentile(hops, 50), "chain_hop_p99_ms": percentile(hops, 99),
            "chain_hop_max_ms": max(hops), "chain20_p50_ms": percentile(chain_spans, 50),
            "agent_dag_p50_ms": percentile(dag_spans, 50), "chain_hop_count": float(len(hops))}


SPECS = {
    "chain_hop_p50_ms": ("chain hop p50 (parent handler end → child handler start)", "ms"),
    "chain_hop_p99_ms": ("chain hop p99", "ms"),
    "chain_hop_max_ms": ("chain hop max", "ms"),
    "chain20_p50_ms": ("20-step chain, submit → run_completed, p50", "ms"),
    "agent_dag_p50_ms": ("7-step agent DAG (20 ms of work), submit → run_completed, p50", "ms"),
    "dbos_step_ms": ("DBOS 3.4: per-step overhead, 20-step workflow", "ms"),
    "ratio_hop_to_dbos_step": ("our hop p50 / DBOS step overhead", "x"),
    "dbos_queue_jobs_per_s": ("DBOS 3.4: queue throughput (defaults, 1 process)", "jobs/s"),
}


def run_chains_bench(server: BenchServer, chains: int, dags: int, repeats: int, dbos_jobs: int,
                     commit_timestamps: bool) -> tuple[list[Figure], str | None]:
    """`repeats` × (our chains and DAGs on a fresh database, then DBOS on another). Returns the
    figures and why DBOS could not run, if it could not."""
    from bench.peers.with_dbos import run_dbos_peer
    samples: list[dict[str, float]] = []
    dbos_missing = None
    for _ in range(repeats):
        url = server.fresh_database("chains")
        try:
            sample = measure_chains(url, chains, dags, commit_timestamps)
        finally:
            server.drop(url)
        if dbos_missing is None:
            url = server.fresh_database("dbos", migrated=False)
            try:
                sample.update(run_dbos_peer(url, workflows=chains, jobs=dbos_jobs))
                sample["ratio_hop_to_dbos_step"] = sample["chain_hop_p50_ms"] / sample["dbos_step_ms"]
            except Unavailable as exc:
                dbos_missing = str(exc)
            finally:
                server.drop(url)
        samples.append(sample)
    spans = "commit timestamps" if commit_timestamps else "created_at = now() (commit timestamps off)"
    count = int(samples[0]["chain_hop_count"]) if samples else 0
    notes = {"chain_hop_p50_ms": f"{count} hops per repeat ({chains} chains of {CHAIN_STEPS} no-op transform steps, "
                                 "2 idle workers); stamps: the workers' wall clocks around each handler",
             "chain20_p50_ms": f"span of the run_created and run_completed audit rows by {spans}",
             "dbos_step_ms": f"{chains} workflows of {CHAIN_STEPS} no-op steps, wall time / {CHAIN_STEPS}",
             "dbos_queue_jobs_per_s": f"{dbos_jobs} no-op workflows on a default queue"}
    return collect(samples, SPECS, notes), dbos_missing
