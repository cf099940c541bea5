"""The throughput protocol every queue under test follows, ours and the peers' alike:

1. a fresh database with the queue's schema; two worker processes started and idle;
2. a warm-up batch, drained (imports, connections and caches are hot, every worker listens);
3. the measured batch enqueued in one transaction, so every job becomes visible at one commit;
4. wait until it is drained; throughput = jobs / (first start → last completion), both read from
   the queue's own timestamps in the database (`now()` of the claiming and completing
   transactions), so process start-up and our polling are not in the figure.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import psycopg

from bench.processes import Process, peak_rss_mb, wait_for
from bench.server import BenchServer

WARMUP_JOBS = 20
POLL_SECONDS = 0.1


class QueueUnderTest(Protocol):
    name: str

    def prepare(self, url: str) -> None:
        """Install the queue's schema into the (empty or migrated) database."""

    def start_workers(self, url: str) -> list[Process]: ...

    def wait_ready(self, url: str, workers: list[Process]) -> None: ...

    def enqueue(self, url: str, jobs: int) -> None:
        """Enqueue `jobs` units of work in one transaction, with the queue's own client."""

    def marker(self, conn: psycopg.Connection) -> int:
        """An id such that everything enqueued after this call has a larger one."""

    def remaining(self, conn: psycopg.Connection) -> int:
        """Work not finished yet (cheap: it is polled)."""

    def window(self, conn: psycopg.Connection, after: int) -> tuple[datetime, datetime, int]:
        """(first start, last completion, jobs completed) of the work enqueued after `after`."""


@dataclass
class DrainResult:
    jobs: int
    seconds: float
    worker_rss_mb: float | None
    connections_peak: int

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("nan")


def drain(server: BenchServer, queue: QueueUnderTest, jobs: int, migrated: bool,
          timeout: float | None = None) -> DrainResult:
    """Run the protocol once on a fresh database; the database is dropped afterwards."""
    url = server.fresh_database(queue.name.replace("-", "_"), migrated=migrated)
    workers: list[Process] = []
    try:
        queue.prepare(url)
        workers = queue.start_workers(url)
        queue.wait_ready(url, workers)
        with psycopg.connect(url, autocommit=True) as conn:
            _run_batch(url, conn, queue, WARMUP_JOBS, workers, timeout=60)
            after = queue.marker(conn)
            connections = _run_batch(url, conn, queue, jobs, workers, timeout or 120 + jobs / 50)
            first, last, done = queue.window(conn, after)
        rss = [r for r in (peak_rss_mb(w.pid) for w in workers) if r is not None]
        return DrainResult(done, (last - first).total_seconds(), max(rss) if rss else None, connections)
    finally:
        for worker in workers:
            worker.stop()
        server.drop(url)


def _run_batch(url: str, conn: psycopg.Connection, queue: QueueUnderTest, jobs: int, workers: list[Process],
               timeout: float) -> int:
    """Enqueue and wait until drained; returns the most connections seen on the database."""
    queue.enqueue(url, jobs)
    peak = 0

    def drained() -> bool:
        nonlocal peak
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} died during the benchmark:\n{worker.output_tail()}")
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()").fetchone()
        peak = max(peak, row[0])
        return queue.remaining(conn) == 0
    wait_for(drained, timeout, f"{queue.name} to drain {jobs} jobs", interval=POLL_SECONDS)
    return peak


def wait_application_names(url: str, names: list[str], workers: list[Process], timeout: float = 30.0,
                           settle: float = 1.0) -> None:
    """For the peers: wait until every worker process has a connection (each connects under its own
    application_name), then let it settle into its listen-and-wait loop."""
    def connected() -> bool:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited early:\n{worker.output_tail()}")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT DISTINCT application_name FROM pg_stat_activity "
                                "WHERE application_name = ANY(%s)", (names,)).fetchall()
        return len(rows) == len(names)
    wait_for(connected, timeout, f"{names} to connect", interval=0.1)
    time.sleep(settle)  # let a worker that just connected reach its LISTEN: start-up, not measured
