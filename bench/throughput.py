"""Throughput of the engine: one-step runs, and runs of a 25-step DAG, processed by two
`python -m worker` processes as shipped (default settings), measured from the audit log: first
`step_started` to last `step_succeeded` of the measured runs (see `bench.drain`); and the peers in
the same repeats.

Statistics: the measured batch is ANALYZEd in its submission transaction, i.e. we measure the steady
state. On a fresh database without it, the workers' prepared claim keeps a plan made for empty
tables (a hash join over every step per claimed step) until autovacuum analyzes `steps`, which a
30-second benchmark never waits for: 25-step DAG throughput is then several times lower.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from bench.drain import drain
from bench.figures import Figure, collect
from bench.peers import PEERS, measure_peers
from bench.processes import Process, start_worker, wait_workers_registered
from bench.server import BenchServer
from engine.config import Settings
from engine.store import connect
from engine.submit import submit_run

WORKERS = 2
DAG_STEPS = 25
# fetch_data with one item: a real handler of the product, about as cheap as a no-op job.
STEP_INPUT = {"tool": "fetch_data", "count": 1}
WARMUP_STATISTICS_BELOW = 100  # the warm-up batch needs no fresh statistics


def one_step_run(index: int) -> dict[str, Any]:
    return {"goal": f"bench one-step {index}", "steps": [{"name": "tool_call.fetch", "input": STEP_INPUT}]}


def dag_run(index: int) -> dict[str, Any]:
    """25 steps: a root, four branches of five chained steps, two merges, a final merge, a report."""
    steps: list[dict[str, Any]] = [{"name": "tool_call.root", "input": STEP_INPUT}]
    for branch in range(4):
        for i in range(5):
            parent = "tool_call.root" if i == 0 else f"tool_call.b{branch}_{i - 1}"
            steps.append({"name": f"tool_call.b{branch}_{i}", "input": STEP_INPUT, "dependsOn": [parent]})
    merge = {"tool": "transform", "op": "stats"}
    steps.append({"name": "tool_call.merge_a", "input": merge, "dependsOn": ["tool_call.b0_4", "tool_call.b1_4"]})
    steps.append({"name": "tool_call.merge_b", "input": merge, "dependsOn": ["tool_call.b2_4", "tool_call.b3_4"]})
    steps.append({"name": "tool_call.merge", "input": merge, "dependsOn": ["tool_call.merge_a", "tool_call.merge_b"]})
    steps.append({"name": "tool_call.report", "input": STEP_INPUT, "dependsOn": ["tool_call.merge"]})
    assert len(steps) == DAG_STEPS
    return {"goal": f"bench dag {index}", "steps": steps}


class EngineQueue:
    """Our engine under the drain protocol; a unit of work is a step."""

    def __init__(self, shape: str) -> None:
        self.shape = shape
        self.name = f"engine-{shape}"
        self.steps_per_run = 1 if shape == "one_step" else DAG_STEPS
        self.settings = Settings.from_env({})
        self.names = [f"bench-worker-{i + 1}" for i in range(WORKERS)]

    def prepare(self, url: str) -> None:
        pass  # the database is cloned from the migrated template

    def start_workers(self, url: str) -> list[Process]:
        return [start_worker(url, name) for name in self.names]

    def wait_ready(self, url: str, workers: list[Process]) -> None:
        wait_workers_registered(url, self.names, workers)

    def enqueue(self, url: str, jobs: int) -> None:
        runs = max(1, jobs // self.steps_per_run)
        make = one_step_run if self.steps_per_run == 1 else dag_run
        with connect(url, application_name="bench-submit") as submitter, submitter.transaction():
            for i in range(runs):  # each submission is a savepoint; all runs appear at one commit
                submit_run(submitter, make(i), self.settings)
            if jobs > WARMUP_STATISTICS_BELOW:
                # Steady state, as autovacuum would have it a minute later: the database is fresh, and
                # plans prepared while its tables were empty (a hash join over all steps for the
                # parents' outputs) would otherwise last the whole measurement. Seen in the same
                # transaction, the new rows are counted.
                submitter.execute("ANALYZE steps, step_deps, runs, audit_log")

    def marker(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()[0]

    def remaining(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]

    def window(self, conn: psycopg.Connection, after: int) -> tuple[datetime, datetime, int]:
        row = conn.execute(
            """SELECT min(created_at) FILTER (WHERE event = 'step_started'),
                      max(created_at) FILTER (WHERE event = 'step_succeeded'),
                      count(*) FILTER (WHERE event = 'step_succeeded'),
                      count(*) FILTER (WHERE event IN ('step_retry_scheduled', 'step_dead_lettered', 'run_failed'))
               FROM audit_log WHERE id > %s""", (after,)).fetchone()
        if row[3]:
            raise RuntimeError(f"{row[3]} failures while measuring throughput: the figure would be wrong")
        return row[0], row[1], row[2]


SPECS = {
    "throughput_steps_per_s": ("throughput, one-step runs", "steps/s"),
    "throughput_dag_steps_per_s": ("throughput, 25-step DAG runs", "steps/s"),
    **{key: (label, "jobs/s") for key, label in PEERS.items()},
    "ratio_to_baseline": ("ours / raw SQL", "x"),
    "ratio_to_pgqueuer": ("ours / PgQueuer", "x"),
    "ratio_to_procrastinate": ("ours / Procrastinate", "x"),
    "ratio_dag_to_pgqueuer": ("ours (DAG) / PgQueuer", "x"),
    "worker_rss_under_load_mb": ("worker peak RSS under load", "MB"),
    "pg_connections_under_load": ("Postgres connections, 2 workers busy", "conns"),
}
RATIOS = {"ratio_to_baseline": "baseline_steps_per_s", "ratio_to_pgqueuer": "pgqueuer_jobs_per_s",
          "ratio_to_procrastinate": "procrastinate_jobs_per_s"}


def measure_engine(server: BenchServer, jobs: int) -> dict[str, float | None]:
    """One repeat of both workloads."""
    one = drain(server, EngineQueue("one_step"), jobs, migrated=True)
    dag = drain(server, EngineQueue("dag"), jobs, migrated=True)
    rss = [r for r in (one.worker_rss_mb, dag.worker_rss_mb) if r is not None]
    return {"throughput_steps_per_s": one.per_second, "throughput_dag_steps_per_s": dag.per_second,
            "worker_rss_under_load_mb": max(rss) if rss else None,
            "pg_connections_under_load": max(one.connections_peak, dag.connections_peak)}


def run_throughput_bench(server: BenchServer, jobs: int, repeats: int,
                         with_peers: bool = True) -> tuple[list[Figure], dict[str, str]]:
    """`jobs` steps per workload (`jobs` one-step runs; `jobs / 25` DAG runs) and `jobs` jobs per
    peer, `repeats` times, interleaved so a noisy spell of the machine hits everyone. Ratios are
    taken within each repeat, then their median. Returns the figures and the peers that could not run."""
    unavailable: dict[str, str] = {}
    samples = []
    for _ in range(repeats):
        sample = measure_engine(server, jobs)
        if with_peers:
            sample.update(measure_peers(server, jobs, unavailable))
        for ratio, peer in RATIOS.items():
            if sample.get(peer):
                sample[ratio] = sample["throughput_steps_per_s"] / sample[peer]
        if sample.get("pgqueuer_jobs_per_s"):
            sample["ratio_dag_to_pgqueuer"] = sample["throughput_dag_steps_per_s"] / sample["pgqueuer_jobs_per_s"]
        samples.append(sample)
    notes = {"throughput_steps_per_s": f"{jobs} one-step runs, {WORKERS} workers, default settings",
             "throughput_dag_steps_per_s": f"{jobs // DAG_STEPS} runs x {DAG_STEPS} steps",
             "baseline_steps_per_s": "2 processes x 2 connections"}
    return collect(samples, SPECS, notes), unavailable
