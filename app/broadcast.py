"""One listener per web process that fans audit events out to WebSocket subscribers.

The listener LISTENs on the engine's events channel (an empty NOTIFY is only a wake-up), reads new
audit rows by id, and hands them in id order to every subscriber's bounded queue (see
`engine.eventorder` for why the order needs care). It also polls, so a lost notification costs
latency, never an event; and after losing its connection it reconnects and re-reads from its
horizon, so nothing is skipped.

A socket subscribes *before* it reads its snapshot from the database: the subscription remembers
the horizon at that instant, the snapshot covers ids up to it, and the queue gets every id after.
A subscriber that falls behind is marked overflowed, and its socket makes the client resync.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from uuid import UUID

import psycopg

from app.listener import ListenerThread
from engine.eventorder import AuditFollower
from engine.store import wait_for_notify
from engine.store.events import EVENTS_CHANNEL, Event

GAP_RECHECK_SECONDS = 0.1


class Subscription:
    """What one socket receives: events after `start_horizon` (of one run, if `run_id` is set;
    worker events without a run are always included)."""

    def __init__(self, start_horizon: int, run_id: str | None, maxsize: int) -> None:
        self.start_horizon = start_horizon
        self.run_id = run_id
        self.queue: queue.Queue[Event] = queue.Queue(maxsize)
        self.overflowed = False

    def wants(self, event: Event) -> bool:
        return self.run_id is None or event.run_id is None or str(event.run_id) == self.run_id

    def offer(self, event: Event) -> None:
        if self.overflowed or not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.overflowed = True

    def get_batch(self, timeout: float, linger: float = 0.05, limit: int = 200) -> list[Event]:
        """Wait up to `timeout` for an event, then collect whatever else arrives within `linger`,
        so a burst is rendered once."""
        try:
            batch = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + linger
        while len(batch) < limit:
            try:
                batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch


class Broadcaster(ListenerThread):
    def __init__(self, database_url: str, gap_seconds: float = 2.0, poll_seconds: float = 1.0,
                 queue_size: int = 2000, clock: Callable[[], float] = time.monotonic,
                 background: bool = True) -> None:
        """`background=False` leaves the listening to the caller (`begin` then `run_once`): tests."""
        super().__init__(database_url, EVENTS_CHANNEL, "live")
        self.background = background
        self.poll_seconds = poll_seconds
        self.queue_size = queue_size
        self.follower = AuditFollower(gap_seconds, clock)
        self.subscribers: set[Subscription] = set()
        self.started = threading.Event()   # the first horizon is known

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, run_id: UUID | str | None = None, timeout: float = 10.0) -> Subscription:
        """Register a subscriber; its `start_horizon` is where its snapshot must end."""
        if self.background:
            self.start()
        if not self.started.wait(timeout):
            raise TimeoutError("the live event listener could not reach the database")
        with self.lock:
            sub = Subscription(self.follower.horizon, str(run_id) if run_id else None, self.queue_size)
            self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            self.subscribers.discard(sub)

    def wake(self, run_id: str, wake_up: Event) -> None:
        """Put `wake_up` in the queue of every subscriber of that run, as a nudge to read something
        else than events; a full queue already has events pending, so it is not an overflow."""
        with self.lock:
            subscribers = [s for s in self.subscribers if s.run_id == run_id]
        for sub in subscribers:
            try:
                sub.queue.put_nowait(wake_up)
            except queue.Full:
                pass

    # -- the listener (a `ListenerThread`) -----------------------------------------------------

    def connected(self, conn: psycopg.Connection) -> None:
        self.begin(conn)

    def turn(self, conn: psycopg.Connection) -> None:
        self.run_once(conn)
        self._wait_for_notify(conn)

    def begin(self, conn: psycopg.Connection) -> None:
        """Set the first horizon (`AuditFollower.begin`); a reconnect keeps it."""
        with self.lock:
            self.follower.begin(conn)
        self.started.set()

    def run_once(self, conn: psycopg.Connection) -> int:
        """Read rows after the horizon and deliver what is deliverable. Returns events delivered."""
        return self.follower.poll(conn, self._fan_out, self.lock)

    def _fan_out(self, events: list[Event]) -> None:
        for event in events:
            for sub in self.subscribers:
                sub.offer(event)

    def _wait_for_notify(self, conn: psycopg.Connection) -> None:
        timeout = GAP_RECHECK_SECONDS if self.follower.waiting else self.poll_seconds
        wait_for_notify(conn, timeout)
