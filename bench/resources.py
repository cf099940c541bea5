"""Resources of the appliance (Postgres, two workers, the web app) after it has done some work:
peak RSS of a worker and of the web process, Postgres connections in use, and the CPU the whole
appliance burns when idle, as a percentage of one core."""
from __future__ import annotations

import time

import psycopg

from bench.appliance import Appliance
from bench.figures import Figure, Unavailable, collect
from bench.processes import cpu_seconds, peak_rss_mb, process_tree, wait_for
from bench.server import BenchServer
from bench.submit_latency import ten_step_dag
from engine.config import Settings
from engine.store import connect
from engine.submit import submit_run

SETTLE_SECONDS = 2.0  # after the load: let the last notifications and heartbeats pass


def measure_resources(appliance: Appliance, runs: int, idle_seconds: float, postmaster: int | None) -> dict[str, float]:
    _load(appliance, runs)
    with psycopg.connect(appliance.url, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0] == 0,
                 120, "the load to finish", interval=0.1)
        time.sleep(SETTLE_SECONDS)  # let the appliance go idle: what we measure next is idleness
        connections = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid()").fetchone()[0]
    groups = {"workers": [w.pid for w in appliance.workers],
              "web": process_tree(appliance.web.process.pid) if appliance.web else [],
              "postgres": process_tree(postmaster) if postmaster else []}
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    started = time.monotonic()
    time.sleep(idle_seconds)  # the measurement window itself
    elapsed = time.monotonic() - started
    cpu = {name: (cpu_seconds(pids) - before[name]) / elapsed * 100 for name, pids in groups.items()}
    worker_rss = [r for r in (peak_rss_mb(w.pid) for w in appliance.workers) if r is not None]
    web_rss = [r for r in (peak_rss_mb(pid) for pid in groups["web"]) if r is not None]
    figures = {"idle_cpu_pct": sum(cpu.values()), "idle_cpu_postgres_pct": cpu["postgres"],
               "idle_cpu_workers_pct": cpu["workers"], "pg_connections_idle": float(connections),
               "worker_rss_mb": max(worker_rss) if worker_rss else None}
    if appliance.web is not None:
        figures.update({"idle_cpu_web_pct": cpu["web"], "web_rss_mb": max(web_rss) if web_rss else None,
                        "web_rss_total_mb": sum(web_rss) if web_rss else None})
    return figures


def _load(appliance: Appliance, runs: int) -> None:
    """Some work first, through the web app when it is there, so peaks are peaks of real use."""
    if appliance.web is None:
        settings = Settings.from_env({})
        with connect(appliance.url, application_name="bench-submit") as conn:
            for i in range(runs):
                submit_run(conn, ten_step_dag(i), settings)
        return
    for i in range(runs):
        status, answer = appliance.post_json("/runs", ten_step_dag(i))
        if status != 201:
            raise RuntimeError(f"POST /runs answered {status}: {answer}")


SPECS = {
    "idle_cpu_pct": ("idle CPU, whole appliance", "% core"),
    "idle_cpu_postgres_pct": ("idle CPU, Postgres", "% core"),
    "idle_cpu_workers_pct": ("idle CPU, 2 workers", "% core"),
    "idle_cpu_web_pct": ("idle CPU, web app", "% core"),
    "worker_rss_mb": ("worker peak RSS", "MB"),
    "web_rss_mb": ("web process peak RSS (largest)", "MB"),
    "web_rss_total_mb": ("web processes peak RSS (sum)", "MB"),
    "pg_connections_idle": ("Postgres connections in use, idle", "conns"),
}


def run_resources_bench(server: BenchServer, runs: int, idle_seconds: float, repeats: int) -> tuple[list[Figure], str]:
    """Returns the figures and a note (empty, or what could not be measured)."""
    note = []
    samples = []
    for _ in range(repeats):
        try:
            appliance = Appliance(server, "resources")
        except Unavailable as exc:
            note.append(f"without the web app: {exc}")
            appliance = Appliance(server, "resources", web=False)
        with appliance:
            samples.append(measure_resources(appliance, runs, idle_seconds, server.postmaster_pid()))
    if not server.owned:
        note.append("Postgres CPU not measured (DATABASE_URL: not our server)")
    notes = {"idle_cpu_pct": f"{idle_seconds:g}s window after {runs} runs of 10 steps"}
    return collect(samples, SPECS, notes), "; ".join(dict.fromkeys(note))
