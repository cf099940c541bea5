"""`python -m bench [--quick] [--json FILE] [--only NAMES]`: run the benchmarks, print a table,
write the figures as JSON (the stable keys of `bench.report.STABLE_KEYS`).

Starts a throwaway Postgres of its own (fsync on, synchronous commit on, otherwise default
settings), or uses the server of DATABASE_URL if set (it needs CREATEDB: every benchmark gets a
fresh database). Throughput and peers run first on the server as configured; then, on our own
cluster, `track_commit_timestamp` is turned on (a restart) so the latency figures can be taken
from commit times. Each figure is the median of its repeats, with the spread (min-max).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict

BENCHMARKS = ("throughput", "peers", "handoff", "chains", "submit", "live", "resources", "recovery", "llm_stream")

# Workload sizes. Full is what the README's figures are measured with; quick keeps the shapes and fits in 3 minutes.
MODES: dict[str, dict[str, float]] = {
    "full": {"jobs": 5000, "repeats": 3, "handoffs": 1000, "handoff_repeats": 3, "submits": 200,
             "submit_repeats": 3, "live_steps": 20, "live_repeats": 3, "load_runs": 50, "idle_seconds": 10,
             "resource_repeats": 3, "recovery_repeats": 20,
             "chains": 20, "dags": 20, "chain_repeats": 3, "dbos_jobs": 1000,
             "stream_tokens": 150, "stream_repeats": 3},
    "quick": {"jobs": 1000, "repeats": 2, "handoffs": 300, "handoff_repeats": 2, "submits": 50,
              "submit_repeats": 2, "live_steps": 10, "live_repeats": 2, "load_runs": 20, "idle_seconds": 4,
              "resource_repeats": 2, "recovery_repeats": 5,
              "chains": 10, "dags": 10, "chain_repeats": 2, "dbos_jobs": 300,
              "stream_tokens": 60, "stream_repeats": 2},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads and fewer repeats (under 3 minutes)")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    parser.add_argument("--only", metavar="NAMES", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from bench.report import figures_json, machine, render_table, write_json
    from bench.runner import Runner
    from bench.server import BenchServer, database_url_from_env

    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    progress(f"starting Postgres ({'DATABASE_URL' if database_url_from_env() else 'throwaway cluster, fsync on'})")
    server = BenchServer(database_url_from_env()).start()
    try:
        runner = Runner(server, MODES[mode], args.only, progress)
        results = runner.run_all()
        environment = {**machine(), "postgres": asdict(server.info()),
                       "postgres_for_throughput": asdict(runner.info_before),
                       "commit_timestamps_for_latency": runner.commit_timestamps, "mode": MODES[mode]}
    finally:
        server.close()
    elapsed = time.monotonic() - started
    print(render_table(results))
    print(f"\n{mode} run, {elapsed:.0f}s; machine: {environment['cpus']} CPUs ({environment['cpu_model']}), "
          f"{environment['memory_gb']} GB; PostgreSQL {environment['postgres']['version'].split()[0]}, "
          f"fsync={environment['postgres']['fsync']}, synchronous_commit={environment['postgres']['synchronous_commit']}")
    if args.json:
        write_json(args.json, figures_json(results, environment, mode, elapsed))
        progress(f"figures written to {args.json}")
    return 0


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
