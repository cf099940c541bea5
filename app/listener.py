"""A web process's listener thread: one LISTEN connection of its own, started lazily (after
gunicorn forked, in the process serving), that reconnects with a growing delay when the database
goes away and outlives any one failed read. `Broadcaster` (audit events) and `StreamHub` (streamed
LLM text) are the two; each says what to do once connected and what one turn of its loop is."""
from __future__ import annotations

import logging
import threading

import psycopg

from engine.errors import StoreUnavailable
from engine.store import connect, driver_errors, listen

log = logging.getLogger("app.live")

FIRST_RECONNECT_SECONDS = 0.2
MAX_RECONNECT_SECONDS = 5.0


class ListenerThread:
    def __init__(self, database_url: str, channel: str, name: str) -> None:
        """`name` names the thread ("live-listener"), the connection ("dae-web-live") and the log lines."""
        self.database_url = database_url
        self.channel = channel
        self.name = name
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread once; later calls do nothing."""
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name=f"{self.name}-listener", daemon=True)
                self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def connected(self, conn: psycopg.Connection) -> None:
        """Called on each (re)connection, once LISTEN is in place."""

    def turn(self, conn: psycopg.Connection) -> None:
        """One turn of the loop while connected: wait for notifications (bounded) and act on them."""
        raise NotImplementedError

    def _loop(self) -> None:
        backoff = FIRST_RECONNECT_SECONDS
        while not self.stopping.is_set():
            try:
                # driver_errors: the reads below raise the engine's exceptions, like every store call.
                with connect(self.database_url, application_name=f"dae-web-{self.name}") as conn, driver_errors():
                    listen(conn, self.channel)
                    self.connected(conn)
                    backoff = FIRST_RECONNECT_SECONDS
                    while not self.stopping.is_set():
                        self.turn(conn)
            except StoreUnavailable as exc:
                log.warning("%s listener lost the database (%s); reconnecting in %.1fs", self.name, exc, backoff)
            except Exception:  # noqa: BLE001 - the listener must outlive any one bad read
                log.exception("%s listener failed; restarting in %.1fs", self.name, backoff)
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_RECONNECT_SECONDS)
