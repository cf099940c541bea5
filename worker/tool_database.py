"""The connection through which tools reach the engine's database (the `notify` tool's side effect).

The database being unavailable is never the step's fault, so it must not cost the step an attempt:
an operation whose session was lost (a Postgres restart, a dropped connection) is retried on a fresh
connection for up to `retry_seconds`. If the database stays unreachable that long, the call raises
`StoreUnavailable`; the slot then releases the step without using the attempt (worker/worker.py)
instead of recording a failure. An error after which the session lives on (a constraint, a bad
statement) is the tool's own and is raised as it is.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from engine.errors import StoreUnavailable
from engine.store import driver_errors
from worker.connections import RECONNECT_MAX_SECONDS, RECONNECT_MIN_SECONDS, ReconnectingConnection

log = logging.getLogger("worker")

T = TypeVar("T")

# Long enough to ride out a Postgres restart (about a second, plus crash recovery), short enough
# that a real outage releases the step well within a lease.
TOOL_DB_RETRY_SECONDS = 10.0


class ToolDatabase:
    """One connection shared by the worker's tool calls (serialised: side effects are rare)."""

    def __init__(self, database_url: str, name: str, stop: threading.Event,
                 retry_seconds: float = TOOL_DB_RETRY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = ReconnectingConnection(database_url, name, stop)
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.lock = threading.Lock()

    def call(self, operation: Callable[[psycopg.Connection], T], cancelled: threading.Event) -> T:
        """Run `operation` on the connection, on a fresh one when the session was lost. Raises
        StoreUnavailable when no connection can be made within `retry_seconds`, or at once when
        `cancelled` is set (the attempt was taken away) while waiting for one."""
        deadline = self.clock() + self.retry_seconds
        delay = RECONNECT_MIN_SECONDS
        with self.lock:
            while True:
                try:
                    conn = self.conn.connect_once()
                except StoreUnavailable as exc:
                    if self.clock() + delay > deadline:
                        raise StoreUnavailable(f"database unavailable for {self.retry_seconds:g}s: {exc}") from exc
                    if cancelled.wait(delay) or self.conn.stop.is_set():
                        raise StoreUnavailable(f"attempt ended while the database was unavailable: {exc}") from exc
                    delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                    continue
                try:
                    with driver_errors():
                        return operation(conn)
                except StoreUnavailable as exc:
                    if not (conn.closed or conn.broken):
                        raise  # the statement failed but its session lives: the tool's own error
                    self.conn.broken(exc)
                    if self.clock() > deadline:
                        raise  # connections can be made, yet each one is lost: not an outage
                    log.info("%s: the session was lost during a tool's call; retrying on a fresh connection",
                             self.conn.name)

    def close(self) -> None:
        self.conn.close()
