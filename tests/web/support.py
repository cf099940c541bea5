"""Test support for the web app: a real `python -m app` (gunicorn) subprocess on a free port, a
database per test module, module-scoped worker processes (optionally kept alive like supervisord
would), and a small HTTP client. Fixtures are imported by the conftests of tests/api, tests/e2e and
tests/web."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.pgcluster import PgCluster, free_port
from engine.store import connect
from tests.helpers import FAST_ENV, ROOT, WorkerProcess, create_database, drop_database, wait_for

# Limits off (tests submit many runs from one address); the tests of the limits turn them on.
WEB_TEST_ENV = {
    **FAST_ENV,
    "WEB_THREADS": "40",
    "SUBMITS_PER_WINDOW": "0",
    "ACTIONS_PER_WINDOW": "0",
    "KILLS_PER_WINDOW": "0",
    "MAX_ACTIVE_RUNS": "0",
    "MAX_ACTIVE_RUNS_PER_CLIENT": "0",
    "MAX_CONNECTIONS_PER_ADDRESS": "0",
    "MAX_SOCKETS_PER_CLIENT": "0",
    "LOG_LEVEL": "WARNING",
}


class WebServer:
    """`python -m app` as a subprocess; ready once `/healthz` answers 200."""

    def __init__(self, database_url: str, log_dir: Path, **env: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.env = {**os.environ, **WEB_TEST_ENV, **env, "DATABASE_URL": database_url, "PORT": str(self.port)}
        self.log_path = log_dir / f"web-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 30.0, healthy_status: int = 200) -> WebServer:
        """Start and wait until /healthz answers `healthy_status` (503: expect no database)."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self.healthy(healthy_status), timeout, "the web server to answer /healthz", interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- web server output ---\n{self.output()[-4000:]}") from None
        return self

    def healthy(self, status: int = 200) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the web server exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
        try:
            return self.request("GET", "/healthz")[0] == status
        except OSError:
            return False

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, payload: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        sent = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, path, body, {**sent, **(headers or {})})
        return status, json.loads(data) if data else None

    def gunicorn_workers(self) -> list[int]:
        """Pids of gunicorn's worker processes (children of the master)."""
        assert self.proc is not None
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                children.append(int(stat.parent.name))
        return children

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def submit_as(web: WebServer, body: dict, client: str) -> str:
    """Submit `body` over the API as the web client `client` (the server trusts an `X-Client`
    header: start it with CLIENT_IP_HEADER="X-Client"); returns the run id."""
    status, created = web.json("POST", "/api/runs", body, headers={"X-Client": client})
    assert status == 201, created
    return created["runId"]


class KeepAlive:
    """Restarts worker processes that die, as supervisord's autorestart does in the appliance."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        self.workers = workers
        self.stopping = threading.Event()
        self.restarts = 0
        self.thread = threading.Thread(target=self._loop, name="keep-alive", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.wait(0.2):  # a supervising loop, not a synchronisation
            for worker in self.workers:
                if not worker.alive():
                    worker.log.close()
                    worker.start()
                    self.restarts += 1

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_db_url(pg: PgCluster) -> Iterator[str]:
    name = create_database(pg, "m_")
    yield pg.url(name)
    drop_database(pg, name)


@pytest.fixture(scope="module")
def module_conn(module_db_url: str) -> Iterator[psycopg.Connection]:
    with connect(module_db_url) as connection:
        yield connection


@pytest.fixture(scope="module")
def server(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    web = WebServer(module_db_url, tmp_path_factory.mktemp("web")).start()
    yield web
    web.stop()


@pytest.fixture(scope="module")
def module_workers(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    log_dir = tmp_path_factory.mktemp("workers")
    started = [WorkerProcess(module_db_url, f"worker-{i}", 4, log_dir=log_dir) for i in (1, 2)]
    keeper = KeepAlive(started)
    yield started
    keeper.stop()
    for worker in started:
        worker.stop()
