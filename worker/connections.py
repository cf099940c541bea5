"""A connection that reconnects with backoff: every loop of the worker owns one, so a Postgres
restart costs each loop a reconnect, never the process."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from engine.errors import StoreUnavailable
from engine.store import connect

log = logging.getLogger("worker")

RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0


class StopRequested(Exception):
    """The worker is shutting down while waiting for the database."""


class ReconnectingConnection:
    """Holds one dedicated connection; `get()` (re)connects, `broken()` drops it after an error.
    `on_connect` runs on every new connection (re-LISTEN, re-take the liveness lock)."""

    def __init__(self, database_url: str, name: str, stop: threading.Event,
                 on_connect: Callable[[psycopg.Connection], None] | None = None) -> None:
        self.database_url = database_url
        self.name = name
        self.stop = stop
        self.on_connect = on_connect
        self.conn: psycopg.Connection | None = None
        self.reconnects = 0

    def get(self) -> psycopg.Connection:
        delay = RECONNECT_MIN_SECONDS
        while self.conn is None:
            try:
                conn = connect(self.database_url, application_name=self.name)
                if self.on_connect:
                    self.on_connect(conn)
                self.conn = conn
            except StoreUnavailable as exc:
                log.warning("%s: cannot connect (%s); retrying in %.2fs", self.name, str(exc).strip(), delay)
                # Waiting out an outage is the point here; stop() interrupts it.
                if self.stop.wait(delay):
                    raise StopRequested from exc
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        return self.conn

    def broken(self, exc: BaseException) -> None:
        log.warning("%s: connection lost (%s)", self.name, str(exc).strip().splitlines()[0] if str(exc) else exc)
        self.close()
        self.reconnects += 1

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
                pass
            self.conn = None
