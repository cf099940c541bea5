"""Connections and pools. Autocommit by default: every transaction is an explicit `transaction()`
block, so none is left open by accident across a tool or LLM call. Opening, checking out and
checking a connection raise the engine's exceptions (`engine/store/errors.py`), never psycopg's."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from engine.store.errors import driver_errors, translated


@translated
def connect(database_url: str, application_name: str = "durable-agent") -> psycopg.Connection:
    """A dedicated autocommit connection (liveness lock, LISTEN, claim loop)."""
    return psycopg.connect(database_url, autocommit=True, row_factory=dict_row,
                           application_name=application_name, connect_timeout=5)


def make_pool(database_url: str, min_size: int = 1, max_size: int = 10,
              application_name: str = "durable-agent") -> ConnectionPool:
    """A pool whose connections are checked on checkout, so a Postgres restart costs one retry."""
    return ConnectionPool(
        database_url, min_size=min_size, max_size=max_size, open=True, timeout=10,
        check=ConnectionPool.check_connection, name=application_name,
        kwargs={"autocommit": True, "row_factory": dict_row, "application_name": application_name,
                "connect_timeout": 5},
    )


@contextmanager
def pooled(pool: ConnectionPool, timeout: float) -> Iterator[psycopg.Connection]:
    """A pooled connection for a block of store calls (waiting at most `timeout` for one); an outage
    inside the block, or no connection in time, surfaces as `StoreUnavailable`."""
    with driver_errors(), pool.connection(timeout=timeout) as conn:
        yield conn


@translated
def connection_check(conn: psycopg.Connection) -> None:
    """One round trip: notices a dead server on a connection that is otherwise only listening."""
    conn.execute("SELECT 1")
