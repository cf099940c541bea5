"""A connection that reconnects with backoff: every loop of the worker owns one, so a Postgres
restart costs each loop a reconnect, never the process. An outage is logged once for the whole
process (`OutageLog`), not once per connection per attempt."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from engine.errors import StoreUnavailable
from engine.store import connect

log = logging.getLogger("worker")

RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0
# The liveness connection (and the reaper's) retry faster: after a Postgres restart, a live worker
# must re-take its liveness lock within RESTART_RELOCK_SECONDS of the first worker that did, or it
# is read as dead (engine/store/recovery.py). A refused connection costs the server next to nothing.
LIVENESS_RECONNECT_MAX_SECONDS = 0.25
STILL_DOWN_LOG_SECONDS = 30.0
# An idle connection notices a restart only when next used: a loss this soon after the database
# came back belongs to the same outage and is not announced again.
SAME_OUTAGE_SECONDS = 10.0


class StopRequested(Exception):
    """The worker is shutting down while waiting for the database."""


class OutageLog:
    """Summarises an outage for the log: a warning when the first connection is lost, a reminder
    every STILL_DOWN_LOG_SECONDS while some cannot reconnect, and one line when the last is back.
    (One line per connection per attempt made 33-57 warnings per Postgres restart over three
    workers, which hid what mattered.)"""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.down: set[str] = set()
        self.affected: set[str] = set()
        self.since = 0.0
        self.failed_attempts = 0
        self.next_reminder = 0.0
        self.ended_at = float("-inf")
        self.reopened = False

    def lost(self, name: str, error: str) -> None:
        """A connection broke (or could not be made): the outage starts, or grows."""
        with self.lock:
            if not self.down and self.clock() - self.ended_at < SAME_OUTAGE_SECONDS:
                self.reopened = True
                log.debug("database connection lost (%s: %s); reconnecting", name, error)
            elif not self.down:
                self.reopened = False
                self.since = self.clock()
                self.failed_attempts = 0
                self.affected = set()
                self.next_reminder = self.since + STILL_DOWN_LOG_SECONDS
                log.warning("database connection lost (%s: %s); reconnecting", name, error)
            self.down.add(name)
            self.affected.add(name)

    def failed(self, name: str, error: str) -> None:
        """A reconnect attempt failed."""
        self.lost(name, error)
        with self.lock:
            self.failed_attempts += 1
            if self.clock() >= self.next_reminder:
                self.next_reminder = self.clock() + STILL_DOWN_LOG_SECONDS
                log.warning("database still unavailable after %.0fs (%d failed attempt(s), waiting: %s; last: %s)",
                            self.clock() - self.since, self.failed_attempts, ", ".join(sorted(self.down)), error)

    def back(self, name: str) -> None:
        with self.lock:
            if name not in self.down:
                return
            self.down.discard(name)
            if not self.down:
                self.ended_at = self.clock()
                log.log(logging.DEBUG if self.reopened else logging.INFO,
                        "database back after %.2fs: %d connection(s) reconnected after %d failed attempt(s)",
                        self.ended_at - self.since, len(self.affected), self.failed_attempts)


# One per process: a worker's connections share an outage (a worker is one process).
PROCESS_OUTAGE = OutageLog()


class ReconnectingConnection:
    """Holds one dedicated connection; `get()` (re)connects, `broken()` drops it after an error.
    `on_connect` runs on every new connection (re-LISTEN, re-take the liveness lock)."""

    def __init__(self, database_url: str, name: str, stop: threading.Event,
                 on_connect: Callable[[psycopg.Connection], None] | None = None,
                 max_delay: float = RECONNECT_MAX_SECONDS, outage: OutageLog = PROCESS_OUTAGE) -> None:
        self.database_url = database_url
        self.name = name
        self.stop = stop
        self.on_connect = on_connect
        self.max_delay = max_delay
        self.outage = outage
        self.conn: psycopg.Connection | None = None
        self.reconnects = 0

    def get(self) -> psycopg.Connection:
        delay = RECONNECT_MIN_SECONDS
        while self.conn is None:
            try:
                self.connect_once()
            except StoreUnavailable as exc:
                # Waiting out an outage is the point here; stop() interrupts it.
                if self.stop.wait(delay):
                    raise StopRequested from exc
                delay = min(delay * 2, self.max_delay)
        return self.conn

    def connect_once(self) -> psycopg.Connection:
        """One attempt to (re)connect; raises StoreUnavailable when it fails."""
        if self.conn is not None:
            return self.conn
        conn: psycopg.Connection | None = None
        try:
            conn = connect(self.database_url, application_name=self.name)
            if self.on_connect:
                self.on_connect(conn)
        except StoreUnavailable as exc:
            if conn is not None:
                conn.close()
            self.outage.failed(self.name, _first_line(exc))
            raise
        self.conn = conn
        self.outage.back(self.name)
        return conn

    def broken(self, exc: BaseException) -> None:
        self.outage.lost(self.name, _first_line(exc))
        self.close()
        self.reconnects += 1

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
                pass
            self.conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
