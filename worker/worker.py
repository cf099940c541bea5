"""The worker: registration and liveness lock, the claim loop, slots, the result recorder and
graceful shutdown. Heartbeats and the reaper live in `worker.reaper`."""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field

import psycopg

from engine import store
from engine.config import Settings
from engine.store import ClaimedStep, StepResult, unavailable_errors
from engine.store.events import STEPS_READY_CHANNEL, listen
from engine.store.notifications import notification_record
from engine.store.steplog import step_log
from engine.store.tools import tools_offer
from engine.tools import StepContext, tool_names
from engine.tools.registry import registered_tools
from worker.connections import ReconnectingConnection, StopRequested
from worker.reaper import Reaper
from worker.slots import execute_step, failure, make_context

log = logging.getLogger("worker")


@dataclass
class InFlight:
    step: ClaimedStep
    ctx: StepContext
    deadline: float  # time.monotonic() after which the attempt has timed out
    timed_out: bool = False
    finished: bool = False  # the handler returned; its result waits for the recorder
    started: float = field(default_factory=time.monotonic)


class Worker:
    def __init__(self, settings: Settings, name: str, concurrency: int | None = None) -> None:
        self.settings = settings
        self.name = name
        self.concurrency = max(1, concurrency or settings.worker_concurrency)
        # What this worker offers: the built-ins plus the users' tools imported before it was built
        # (worker/__main__.py loads TOOL_MODULES first). The claim only takes steps of these tools.
        self.tools = sorted(tool_names())
        self.worker_id: int | None = None
        self.in_flight: dict[int, InFlight] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()          # something to claim, or a slot came free
        self.stopping = threading.Event()      # SIGTERM: stop claiming
        self.shutdown = threading.Event()      # everything ends
        self.results: queue.Queue[StepResult] = queue.Queue()
        self.reserved = 0  # slots the recorder is claiming for in its transaction right now
        # Slot threads take claimed steps from this queue (None stops one). Twice the slots, for
        # handler threads that outlived their timeout. No Future per step: on the hot path, a
        # ThreadPoolExecutor's Future and its Condition cost more than the queue hand-off itself.
        self.tasks: queue.SimpleQueue[InFlight | None] = queue.SimpleQueue()
        self.slot_threads = self.concurrency * 2
        url = settings.database_url
        self.liveness = ReconnectingConnection(url, f"{name}:liveness", self.shutdown, self._on_liveness_connect)
        self.claimer = ReconnectingConnection(url, f"{name}:claim", self.shutdown, store.step_claim_session)
        self.recorder = ReconnectingConnection(url, f"{name}:record", self.shutdown, store.step_claim_session)
        self.side_effects = ReconnectingConnection(url, f"{name}:tools", self.shutdown)
        self.side_effects_lock = threading.Lock()
        self.reaper = Reaper(self)
        self.threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register, take the liveness lock and start the background loops."""
        self.liveness.get()
        loops = [(self._listen_loop, "listen"), (self._record_loop, "record"), (self.reaper.loop, "reaper")]
        loops += [(self._slot_loop, f"slot{i}") for i in range(self.slot_threads)]
        for target, label in loops:
            thread = threading.Thread(target=target, name=f"{self.name}-{label}", daemon=True)
            thread.start()
            self.threads.append(thread)
        log.info("worker %s started (incarnation %s, %d slots)", self.name, self.worker_id, self.concurrency)

    def _on_liveness_connect(self, conn: psycopg.Connection) -> None:
        if self.worker_id is None:
            tools_offer(conn, {name: spec.defaults for name, spec in registered_tools().items()})
            self.worker_id = store.worker_register(conn, self.name, socket.gethostname(), os.getpid(), self.tools)
        else:  # reconnected after an outage: same incarnation, take the lock again
            store.worker_lock_liveness(conn, self.worker_id)
            store.worker_touch(conn, self.worker_id)
        listen(conn, STEPS_READY_CHANNEL)
        self.wake.set()  # notifications may have been missed: look at the queue again

    def run_forever(self) -> None:
        self.start()
        while not self.stopping.is_set():
            self.run_once(wait=True)
        self.drain_and_stop()

    def drain_and_stop(self) -> None:
        """Let running steps finish within the grace period, release what is left, deregister."""
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self.active_count() and time.monotonic() < deadline:
            self.wake.wait(0.05)
            self.wake.clear()
        self._wait_results_recorded(deadline=time.monotonic() + 5)
        with self.lock:
            leftovers = [(f.step.id, f.step.attempt) for f in self.in_flight.values()]
            for flight in self.in_flight.values():
                flight.ctx.cancelled.set()
        try:
            conn = self.claimer.get()
            released = store.step_release(conn, self.name, leftovers)
            if released:
                log.info("released %d unfinished step(s) to other workers", released)
            store.worker_stopped(conn, self.worker_id or 0, self.name)
        except (StopRequested, *unavailable_errors) as exc:
            log.warning("could not release steps on shutdown (%s); leases will expire", exc)
        self.shutdown.set()
        for _ in range(self.slot_threads):
            self.tasks.put(None)
        for conn in (self.claimer, self.recorder, self.side_effects, self.liveness):
            conn.close()
        log.info("worker %s stopped", self.name)

    def _wait_results_recorded(self, deadline: float) -> None:
        """Until every finished handler's result is committed: releasing one still on its way
        would make another worker run the step again."""
        while time.monotonic() < deadline:
            with self.lock:
                waiting = any(f.finished for f in self.in_flight.values())
            if not waiting and self.results.empty():
                return
            self.wake.wait(0.05)
            self.wake.clear()

    # -- claiming ------------------------------------------------------------------------------

    def active_count(self) -> int:
        with self.lock:
            return sum(1 for f in self.in_flight.values() if not f.timed_out)

    def free_slots(self) -> int:
        """Slots whose handler is not running. A finished step waiting for the recorder's commit
        keeps its lease (and its heartbeat) but not its slot, so claiming overlaps recording; at
        most `concurrency` such results may wait, which bounds what a slow database can pile up."""
        with self.lock:
            return self._free_slots_locked()

    def _free_slots_locked(self, recording: int = 0) -> int:
        executing = sum(1 for f in self.in_flight.values() if not f.timed_out and not f.finished)
        waiting = len(self.in_flight) - recording
        return min(self.concurrency - executing, 2 * self.concurrency - waiting) - self.reserved

    def run_once(self, wait: bool = False) -> int:
        """One iteration of the claim loop: claim up to the free slots and start them. With
        `wait`, sleep until woken (NOTIFY, a free slot, the next retry time, or the poll interval)
        when nothing was claimed. Returns the number of steps claimed."""
        # Clear before looking, whether or not a slot is free: a wake-up that arrives after this
        # line is kept for the wait below, and one that came before is answered by this look. (Left
        # set while every slot is busy, it made the loop spin until a slot freed.)
        self.wake.clear()
        free = self.free_slots()
        claimed: list[ClaimedStep] = []
        if free > 0 and not self.stopping.is_set():
            try:
                claimed = store.step_claim(self.claimer.get(), self.name, self.worker_id or 0, free,
                                           self.settings.lease_seconds, self.tools)
            except StopRequested:
                return 0
            except unavailable_errors as exc:
                self.claimer.broken(exc)
                return 0
            for step in claimed:
                self._start(step)
            if claimed:
                self._notify(steps_ready=False)
        if wait and not claimed:
            self.wake.wait(self._idle_wait_seconds(free))
        return len(claimed)

    def _idle_wait_seconds(self, free: int) -> float:
        """Until the poll interval, or the next retry's time if that is sooner."""
        if free <= 0 or self.claimer.conn is None:
            return self.settings.poll_seconds
        try:
            until = store.step_seconds_until_ready(self.claimer.conn, self.tools)
        except unavailable_errors as exc:
            self.claimer.broken(exc)
            return 0.1
        if until is None:
            return self.settings.poll_seconds
        return min(self.settings.poll_seconds, max(0.005, until))

    def _start(self, step: ClaimedStep) -> None:
        ctx = make_context(step, self.settings, lambda message, s=step: self._record_notification(s, message),
                           lambda level, message, s=step: self._record_log(s, level, message))
        flight = InFlight(step, ctx, deadline=time.monotonic() + step.timeout_seconds)
        with self.lock:
            self.in_flight[step.id] = flight
        self.tasks.put(flight)

    def _slot_loop(self) -> None:
        while (flight := self.tasks.get()) is not None:
            self._execute(flight)

    def _execute(self, flight: InFlight) -> None:
        result = execute_step(flight.step, flight.ctx)
        with self.lock:
            if flight.timed_out:  # the timeout was already recorded as this attempt's outcome
                self.in_flight.pop(flight.step.id, None)
                return
            flight.finished = True
            idle = not any(not f.finished and not f.timed_out for f in self.in_flight.values())
        self.results.put(result)
        if idle:  # every slot is free: claim now instead of after the recorder's commit
            self.wake.set()

    def _record_notification(self, step: ClaimedStep, message: str) -> bool:
        with self.side_effects_lock:
            try:
                return notification_record(self.side_effects.get(), step.idempotency_key, step.run_id,
                                           message, step.attempt)
            except unavailable_errors as exc:
                self.side_effects.broken(exc)
                raise

    def _record_log(self, step: ClaimedStep, level: str, message: str) -> bool:
        """A `ctx.log` line as a `step_log` event; a lost database costs the line, never the step."""
        with self.side_effects_lock:
            try:
                return step_log(self.side_effects.get(), step.id, step.run_id, step.attempt, self.name, level, message)
            except StopRequested:
                return False
            except unavailable_errors as exc:
                self.side_effects.broken(exc)
                return False

    def expire_timeouts(self) -> None:
        """Record a timed-out attempt as failed; its thread's eventual result is dropped."""
        now = time.monotonic()
        with self.lock:
            expired = [f for f in self.in_flight.values() if not f.timed_out and now > f.deadline]
            for flight in expired:
                flight.timed_out = True
                flight.ctx.cancelled.set()
        for flight in expired:
            self.results.put(failure(flight.step, f"timed out after {flight.step.timeout_seconds:g}s"))

    # -- recording -----------------------------------------------------------------------------

    def _record_loop(self) -> None:
        while not self.shutdown.is_set():
            try:
                first = self.results.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self.results.get_nowait())
                except queue.Empty:
                    break
            self._record(batch)

    def _notify(self, steps_ready: bool) -> None:
        """After the claim's commit: announce its step_started rows."""
        try:
            store.notify_after_commit(self.claimer.get(), steps_ready)
        except (StopRequested, *unavailable_errors):
            pass  # a lost wake-up costs latency only: every listener also polls

    def _record(self, batch: list[StepResult]) -> None:
        """Record the batch and, in the same transaction, claim as many steps as there are free slots."""
        summary, claimed, limit = store.RecordSummary(0, 0), [], 0
        with self.lock:
            if not self.stopping.is_set():
                limit = max(0, self._free_slots_locked(recording=len(batch)))
                self.reserved += limit
        try:
            while True:
                try:
                    summary, claimed = store.step_record_and_claim(
                        self.recorder.get(), self.name, self.worker_id or 0, batch, limit,
                        self.settings.lease_seconds, self.tools)
                    break
                except StopRequested:
                    return
                except unavailable_errors as exc:
                    self.recorder.broken(exc)
                except psycopg.errors.DeadlockDetected:
                    log.info("deadlock while recording %d result(s); retrying", len(batch))
                except Exception:  # noqa: BLE001 - never lose the recorder thread to one bad batch
                    # The attempts stay running in the database; their leases expire and they are retried.
                    log.exception("could not record %d result(s); leaving them to lease expiry", len(batch))
                    self.recorder.close()
                    break
        finally:
            with self.lock:
                self.reserved -= limit
        if summary.discarded:
            log.warning("%d result(s) discarded: the step was taken away from this attempt", summary.discarded)
        with self.lock:
            for result in batch:
                flight = self.in_flight.get(result.step_id)
                if flight and flight.step.attempt == result.attempt:
                    del self.in_flight[result.step_id]
        for step in claimed:
            self._start(step)
        # Other workers are woken only when this one may have left ready steps behind: its slots are
        # full, or it claimed fewer than became ready (steps of tools only another pool offers).
        left_behind = summary.newly_ready > 0 and (len(claimed) >= limit or summary.newly_ready > len(claimed))
        try:
            store.notify_after_commit(self.recorder.get(), steps_ready=left_behind)
        except (StopRequested, *unavailable_errors):
            pass  # a lost wake-up costs latency only: every listener also polls
        self.wake.set()

    # -- listening -----------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        """Wake the claim loop on NOTIFY; keep the liveness connection (and its lock) alive."""
        while not self.shutdown.is_set():
            try:
                conn = self.liveness.get()
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    self.wake.set()
                if self.liveness.conn is not None:
                    conn.execute("SELECT 1")  # notice a dead server even when nothing is notified
            except StopRequested:
                return
            except unavailable_errors as exc:
                if not self.shutdown.is_set():
                    self.liveness.broken(exc)
