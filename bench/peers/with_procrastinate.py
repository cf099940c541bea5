"""Procrastinate as its documentation runs it: `procrastinate --app=… worker`, psycopg, every
worker option at its default (concurrency 1, LISTEN/NOTIFY on, jobs kept), one no-op async task.
Its events table gives the timestamps (`started`, `succeeded`, written by its triggers).
"""
from __future__ import annotations

import os
import sys
from datetime import datetime

import psycopg

from bench.drain import wait_application_names
from bench.processes import Process

APP = "bench.peers.with_procrastinate.app"


def _make_app() -> object:
    import procrastinate

    url = os.environ.get("BENCH_PEER_URL", "")
    name = os.environ.get("BENCH_PEER_NAME", "bench-procrastinate")
    application = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=url, kwargs={"application_name": name}))

    @application.task(name="noop")
    async def noop() -> None:
        return None

    return application


try:
    app = _make_app()
except ImportError:  # the benchmark reports procrastinate as unavailable
    app = None


class ProcrastinateQueue:
    name = "procrastinate"

    def __init__(self, processes: int = 2) -> None:
        self.names = [f"bench-procrastinate-{i + 1}" for i in range(processes)]

    def _app(self, url: str) -> object:
        os.environ["BENCH_PEER_URL"] = url
        try:
            return _make_app()
        except ImportError as exc:
            raise ImportError(f"{exc}: pip install -r requirements-bench.txt") from exc

    def prepare(self, url: str) -> None:
        application = self._app(url)
        with application.open():  # type: ignore[attr-defined]
            application.schema_manager.apply_schema()  # type: ignore[attr-defined]

    def start_workers(self, url: str) -> list[Process]:
        return [Process(name, [sys.executable, "-m", "procrastinate", "--app", APP, "worker"],
                        {"BENCH_PEER_URL": url, "BENCH_PEER_NAME": name}) for name in self.names]

    def wait_ready(self, url: str, workers: list[Process]) -> None:
        wait_application_names(url, self.names, workers)

    def enqueue(self, url: str, jobs: int) -> None:
        application = self._app(url)
        with application.open():  # type: ignore[attr-defined]
            task = application.tasks["noop"]  # type: ignore[attr-defined]
            task.batch_defer(*({} for _ in range(jobs)))  # one INSERT: one transaction

    def marker(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT coalesce(max(id), 0) FROM procrastinate_jobs").fetchone()[0]

    def remaining(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')").fetchone()[0]

    def window(self, conn: psycopg.Connection, after: int) -> tuple[datetime, datetime, int]:
        row = conn.execute(
            """SELECT min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type = 'succeeded'),
                      count(*) FILTER (WHERE type = 'succeeded')
               FROM procrastinate_events WHERE job_id > %s""", (after,)).fetchone()
        return row[0], row[1], row[2]
