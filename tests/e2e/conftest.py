"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, against one real gunicorn
server, two real workers (restarted when they die, as supervisord would) and a real Postgres."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from engine.pgcluster import PgCluster
from engine.store import connect
from tests.helpers import ROOT, WorkerProcess
from tests.web.support import KeepAlive, WebServer, create_database, drop_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": LAPTOP}


@dataclass
class Stack:
    server: WebServer
    workers: list[WorkerProcess]
    conn: psycopg.Connection
    database_url: str


@pytest.fixture(scope="session")
def stack(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    name = create_database(pg, "e2e_")
    url = pg.url(name)
    logs = tmp_path_factory.mktemp("e2e")
    server = WebServer(url, logs).start()
    workers = [WorkerProcess(url, f"worker-{i}", 4, log_dir=logs) for i in (1, 2)]
    keeper = KeepAlive(workers)
    with connect(url) as conn:
        yield Stack(server, workers, conn, url)
    keeper.stop()
    for worker in workers:
        worker.stop()
    server.stop()
    drop_database(pg, name)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
