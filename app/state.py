"""What a web process shares between requests: settings, the connection pool, the live
broadcaster; and `db()`, the one way views get a connection."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from flask import current_app
from psycopg_pool import ConnectionPool

from app.broadcast import Broadcaster
from app.config import WebSettings
from engine.config import Settings
from engine.store import pooled


@dataclass
class AppState:
    settings: Settings
    web: WebSettings
    pool: ConnectionPool
    broadcaster: Broadcaster


def state() -> AppState:
    return current_app.extensions["dae"]


DB_WAIT_SECONDS = 5.0


@contextmanager
def db(timeout: float = DB_WAIT_SECONDS) -> Iterator[psycopg.Connection]:
    """A pooled autocommit connection (waiting at most `timeout` for one); database outages
    surface as `StoreUnavailable` (503)."""
    with pooled(state().pool, timeout) as conn:
        yield conn
