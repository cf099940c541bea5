"""The peers we compare against, on the same server with the same job count and two worker
processes each: the raw two-transaction SKIP LOCKED loop, PgQueuer and Procrastinate (the last
two at their defaults, installed from requirements-bench.txt).

Each peer module holds a `QueueUnderTest` for `bench.drain` and the program of its workers.
"""
from __future__ import annotations

import logging

from bench.drain import drain
from bench.server import BenchServer

log = logging.getLogger("bench")

# figure key → label
PEERS = {
    "baseline_steps_per_s": "raw SQL: claim tx + complete tx",
    "pgqueuer_jobs_per_s": "PgQueuer 1.6 (defaults)",
    "procrastinate_jobs_per_s": "Procrastinate 3.10 (defaults)",
}


def _queue(key: str) -> object:
    if key == "baseline_steps_per_s":
        from bench.peers.raw_sql import RawSqlQueue
        return RawSqlQueue()
    if key == "pgqueuer_jobs_per_s":
        from bench.peers.with_pgqueuer import PgQueuerQueue
        return PgQueuerQueue()
    from bench.peers.with_procrastinate import ProcrastinateQueue
    return ProcrastinateQueue()


def measure_peers(server: BenchServer, jobs: int, unavailable: dict[str, str]) -> dict[str, float]:
    """One repeat of every peer: {figure key: jobs/s}. A peer that cannot run here is left out and
    the reason goes into `unavailable`."""
    figures: dict[str, float] = {}
    for key in PEERS:
        if key in unavailable:
            continue
        try:
            result = drain(server, _queue(key), jobs, migrated=False)  # type: ignore[arg-type]
        except ImportError as exc:
            unavailable[key] = str(exc)
            continue
        figures[key] = result.per_second
    return figures
