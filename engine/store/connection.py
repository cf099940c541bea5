"""Connections and pools. Autocommit by default: every transaction is an explicit `transaction()`
block, so none is left open by accident across a tool or LLM call."""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

# Errors after which the connection is unusable and the caller should reconnect and retry.
unavailable_errors: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)


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
