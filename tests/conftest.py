"""Fixtures: one throwaway Postgres cluster per test session, a fresh database per test (cloned
from a migrated template), real worker processes."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine.config import Settings
from engine.migrate import migrate
from engine.pgcluster import PgCluster
from engine.store import connect
from tests.helpers import FAST_ENV, WorkerProcess

TEMPLATE_DB = "dae_template"


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


def _create_database(cluster: PgCluster) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return name


def _drop_database(cluster: PgCluster, name: str) -> None:
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg.OperationalError:
        pass  # the cluster may be down after a chaos test; it is thrown away anyway


@pytest.fixture
def db_url(pg: PgCluster) -> Iterator[str]:
    name = _create_database(pg)
    yield pg.url(name)
    _drop_database(pg, name)


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
