"""The baseline: the least a Postgres queue can do. One transaction claims one job with
`FOR UPDATE SKIP LOCKED`, one transaction completes it; no batching, no audit, no events.

`python -m bench.peers.raw_sql URL --name NAME [--threads N]` is one worker process with N
connections (threads), each looping claim → complete; it polls every few milliseconds when idle.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime

import psycopg

from bench.drain import wait_application_names
from bench.processes import Process

THREADS_PER_PROCESS = 2  # two processes x two connections: the four clients of the pgbench figure
IDLE_POLL_SECONDS = 0.005

SCHEMA = """
CREATE TABLE raw_jobs (
    id          bigserial PRIMARY KEY,
    status      text NOT NULL DEFAULT 'queued',
    payload     jsonb,
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX raw_jobs_queued ON raw_jobs (id) WHERE status = 'queued';
CREATE INDEX raw_jobs_unfinished ON raw_jobs (id) WHERE status <> 'done';
"""

CLAIM = """
UPDATE raw_jobs SET status = 'running', started_at = now()
WHERE id = (SELECT id FROM raw_jobs WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, payload
"""
COMPLETE = "UPDATE raw_jobs SET status = 'done', finished_at = now() WHERE id = %s"


class RawSqlQueue:
    name = "raw-sql"

    def __init__(self, processes: int = 2) -> None:
        self.names = [f"bench-raw-{i + 1}" for i in range(processes)]

    def prepare(self, url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)

    def start_workers(self, url: str) -> list[Process]:
        return [Process(name, [sys.executable, "-m", "bench.peers.raw_sql", url, "--name", name]) for name in self.names]

    def wait_ready(self, url: str, workers: list[Process]) -> None:
        wait_application_names(url, self.names, workers)

    def enqueue(self, url: str, jobs: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO raw_jobs (payload) SELECT '{}'::jsonb FROM generate_series(1, %s)", (jobs,))

    def marker(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT coalesce(max(id), 0) FROM raw_jobs").fetchone()[0]

    def remaining(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM raw_jobs WHERE status <> 'done'").fetchone()[0]

    def window(self, conn: psycopg.Connection, after: int) -> tuple[datetime, datetime, int]:
        row = conn.execute("SELECT min(started_at), max(finished_at), count(*) FROM raw_jobs WHERE id > %s",
                           (after,)).fetchone()
        return row[0], row[1], row[2]


def work(url: str, name: str, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True, application_name=name) as conn:
        while not stop.is_set():
            with conn.transaction():
                job = conn.execute(CLAIM).fetchone()
            if job is None:
                stop.wait(IDLE_POLL_SECONDS)
                continue
            with conn.transaction():
                conn.execute(COMPLETE, (job[0],))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.raw_sql", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--name", required=True)
    parser.add_argument("--threads", type=int, default=THREADS_PER_PROCESS)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=work, args=(args.url, args.name, stop)) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
