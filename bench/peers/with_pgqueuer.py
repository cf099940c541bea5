"""PgQueuer as its documentation runs it: a factory run by `pgqueuer.run()` on uvloop, asyncpg, every
option at its default (batches of 10, buffered completions), one no-op entrypoint. Its log table
gives the timestamps: `picked` is logged by the dequeue, `successful` when the buffered completion
is written.

`python -m bench.peers.with_pgqueuer` is one worker process. It does what `pgq run module:factory`
does (same defaults, same event loop): the `pgq` command of 1.6.0 fails before starting with typer
0.29 (its `--log-level` default reaches the logger as a plain string).
"""
from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import psycopg

from bench.drain import wait_application_names
from bench.processes import Process

ENTRYPOINT = "noop"


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[object]:
    """The factory `pgq run` calls in each worker process."""
    import asyncpg
    from pgqueuer import Job, PgQueuer

    connection = await asyncpg.connect(os.environ["BENCH_PEER_URL"],
                                       server_settings={"application_name": os.environ["BENCH_PEER_NAME"]})
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        return None

    try:
        yield pgq
    finally:
        await connection.close()


async def _with_queries(url: str, action: str, jobs: int = 0) -> None:
    import asyncpg
    from pgqueuer import Queries

    connection = await asyncpg.connect(url)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        if action == "install":
            await queries.install()
        else:
            await queries.enqueue([ENTRYPOINT] * jobs, [None] * jobs, [0] * jobs)
    finally:
        await connection.close()


class PgQueuerQueue:
    name = "pgqueuer"

    def __init__(self, processes: int = 2) -> None:
        self.names = [f"bench-pgq-{i + 1}" for i in range(processes)]

    def prepare(self, url: str) -> None:
        try:
            import asyncpg  # noqa: F401
            import pgqueuer  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"{exc}: pip install -r requirements-bench.txt") from exc
        asyncio.run(_with_queries(url, "install"))

    def start_workers(self, url: str) -> list[Process]:
        return [Process(name, [sys.executable, "-m", "bench.peers.with_pgqueuer"],
                        {"BENCH_PEER_URL": url, "BENCH_PEER_NAME": name}) for name in self.names]

    def wait_ready(self, url: str, workers: list[Process]) -> None:
        wait_application_names(url, self.names, workers)

    def enqueue(self, url: str, jobs: int) -> None:
        asyncio.run(_with_queries(url, "enqueue", jobs))  # one INSERT … unnest: one transaction

    def marker(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT coalesce(max(job_id), 0) FROM pgqueuer_log").fetchone()[0]

    def remaining(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM pgqueuer").fetchone()[0]  # done jobs are deleted

    def window(self, conn: psycopg.Connection, after: int) -> tuple[datetime, datetime, int]:
        row = conn.execute(
            """SELECT min(created) FILTER (WHERE status = 'picked'),
                      max(created) FILTER (WHERE status = 'successful'),
                      count(DISTINCT job_id) FILTER (WHERE status = 'successful')
               FROM pgqueuer_log WHERE job_id > %s""", (after,)).fetchone()
        return row[0], row[1], row[2]


def main() -> int:
    import pgqueuer
    import uvloop

    uvloop.run(pgqueuer.run(create_pgqueuer))  # SIGTERM stops it, as under `pgq run`
    return 0


if __name__ == "__main__":
    sys.exit(main())
