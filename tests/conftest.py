"""Fixtures: one throwaway Postgres cluster per test session, a fresh database per test (cloned
from a migrated template), real worker processes."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine.config import Settings
from engine.migrate import migrate
from engine.pgcluster import PgCluster
from engine.store import connect
from tests.helpers import FAST_ENV, TEMPLATE_DB, WorkerProcess, create_database, drop_database


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster().init().start()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        migrate(cluster.url(TEMPLATE_DB))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def db_url(pg: PgCluster) -> Iterator[str]:
    name = create_database(pg, "t_")
    yield pg.url(name)
    drop_database(pg, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with connect(db_url) as connection:
        yield connection


@pytest.fixture
def settings(db_url: str) -> Settings:
    env = {**FAST_ENV, "DATABASE_URL": db_url}
    return Settings.from_env(env)


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Start workers with `spawn(name, ...)`; all are stopped at the end and their logs kept."""
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.fixture
def spawn(db_url: str, workers: list[WorkerProcess], tmp_path: Path):  # noqa: ANN201 - a factory
    def start(name: str, concurrency: int = 4, **env: str) -> WorkerProcess:
        proc = WorkerProcess(db_url, name, concurrency, env={k: str(v) for k, v in env.items()}, log_dir=tmp_path)
        workers.append(proc)
        return proc
    return start


def pytest_report_header() -> str:
    return f"durable agent engine tests; PG_BIN={os.environ.get('PG_BIN', 'auto')}"
