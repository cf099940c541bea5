"""The worker: registration and liveness lock, the claim loop, slots, the result recorder and
graceful shutdown. What it holds in flight, and the slot accounting, live in `worker.inflight`;
heartbeats and the reaper in `worker.reaper`, built from that table."""
from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time

import psycopg

from engine import store
from engine.config import Settings
from engine.errors import RetryableConflict, StoreUnavailable
from engine.store import ClaimedStep, StepResult
from engine.store.events import STEPS_READY_CHANNEL, listen
from engine.store.notifications import notification_record
from engine.store.steplog import step_log
from engine.store.tools import tools_offer
from engine.tools import StepContext, tool_names
from engine.tools.registry import registered_tools
from worker.connections import LIVENESS_RECONNECT_MAX_SECONDS, ReconnectingConnection, StopRequested
from worker.inflight import InFlight, InFlightTable
from worker.llm_support import LlmSupport
from worker.reaper import Reaper
from worker.slots import chaos_rng, execute_step, make_context
from worker.stamps import StepStamps
from worker.tool_database import ToolDatabase
from worker.watcher import Watcher

log = logging.getLogger("worker")

# A deadlock between two recorders is rolled back by Postgres and succeeds when run again; a few
# retries with growing, jittered pauses, then the batch is left to lease expiry like any failure.
RECORD_RETRIES = 5
RECORD_RETRY_BASE_SECONDS = 0.01


class Worker:
    def __init__(self, settings: Settings, name: str, concurrency: int | None = None) -> None:
        self.settings = settings
        self.name = name
        self.concurrency = max(1, concurrency or settings.worker_concurrency)
        # What this worker offers: the built-ins plus the users' tools imported before it was built
        # (worker/__main__.py loads TOOL_MODULES first). The claim only takes steps of these tools.
        self.tools = sorted(tool_names())
        self.worker_id: int | None = None
        self.table = InFlightTable(self.concurrency)
        self.chaos_rng = chaos_rng(settings, name)
        self.wake = threading.Event()          # something to claim, or a slot came free
        self.stopping = threading.Event()      # SIGTERM: stop claiming
        self.shutdown = threading.Event()      # everything ends
        # Slot threads take claimed steps from this queue (None stops one). Twice the slots, for
        # handler threads that outlived their timeout. No Future per step: on the hot path, a
        # ThreadPoolExecutor's Future and its Condition cost more than the queue hand-off itself.
        self.tasks: queue.SimpleQueue[InFlight | None] = queue.SimpleQueue()
        self.slot_threads = self.concurrency * 2
        url = settings.database_url
        self.liveness = ReconnectingConnection(url, f"{name}:liveness", self.shutdown, self._on_liveness_connect,
                                               max_delay=LIVENESS_RECONNECT_MAX_SECONDS)
        self.claimer = ReconnectingConnection(url, f"{name}:claim", self.shutdown, store.step_claim_session)
        self.recorder = ReconnectingConnection(url, f"{name}:record", self.shutdown, store.step_record_session)
        self.side_effects = ToolDatabase(url, f"{name}:tools", self.shutdown)
        # One record transaction at a time on the recorder connection: whoever holds this lock
        # records (see docs/ARCHITECTURE.md, "Same-slot hand-off").
        self.record_lock = threading.Lock()
        self.stamps = StepStamps(settings.step_stamps_file) if settings.step_stamps_file else None
        reaper_conn = ReconnectingConnection(url, f"{name}:reaper", self.shutdown, max_delay=LIVENESS_RECONNECT_MAX_SECONDS)
        self.reaper = Reaper(self.table, reaper_conn, settings, name, lambda: self.worker_id, self.wake.set, self.shutdown)
        self.watcher = Watcher(ReconnectingConnection(url, f"{name}:watch", self.shutdown), settings, name,
                               lambda: self.worker_id, self.wake.set, self.shutdown)
        self.llm = LlmSupport(settings, name)
        self.threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register, take the liveness lock and start the background loops."""
        self.liveness.get()
        self.llm.configure(self.claimer.get())
        loops = [(self._listen_loop, "listen"), (self._record_loop, "record"), (self.reaper.loop, "reaper"),
                 (self.watcher.loop, "watch")]
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
        while self.table.active_count() and time.monotonic() < deadline:
            self.wake.wait(0.05)
            self.wake.clear()
        self._wait_results_recorded(deadline=time.monotonic() + 5)
        leftovers = self.table.cancel_all()
        try:
            conn = self.claimer.get()
            released = store.step_release(conn, self.name, leftovers)
            if released:
                log.info("released %d unfinished step(s) to other workers", released)
            store.worker_stopped(conn, self.worker_id or 0, self.name)
        except (StopRequested, StoreUnavailable) as exc:
            log.warning("could not release steps on shutdown (%s); leases will expire", exc)
        self.shutdown.set()
        for _ in range(self.slot_threads):
            self.tasks.put(None)
        for conn in (self.claimer, self.recorder, self.side_effects.conn, self.liveness):
            conn.close()
        self.llm.close()
        if self.stamps is not None:
            self.stamps.write()
        log.info("worker %s stopped", self.name)

    def _wait_results_recorded(self, deadline: float) -> None:
        """Until every finished handler's result is committed: releasing one still on its way
        would make another worker run the step again."""
        while time.monotonic() < deadline:
            if not self.table.awaiting_record():
                return
            self.wake.wait(0.05)
            self.wake.clear()

    # -- claiming ------------------------------------------------------------------------------

    def run_once(self, wait: bool = False) -> int:
        """One iteration of the claim loop: claim up to the free slots and start them. With
        `wait`, sleep until woken (NOTIFY, a free slot, the next retry time, or the poll interval)
        when nothing was claimed. Returns the number of steps claimed."""
        # Clear before looking, whether or not a slot is free: a wake-up that arrives after this
        # line is kept for the wait below, and one that came before is answered by this look. (Left
        # set while every slot is busy, it made the loop spin until a slot freed.)
        self.wake.clear()
        free = self.table.free_slots()
        claimed: list[ClaimedStep] = []
        if free > 0 and not self.stopping.is_set():
            try:
                claimed = store.step_claim(self.claimer.get(), self.name, self.worker_id or 0, free,
                                           self.settings.lease_seconds,
                                           client_cap=self.settings.max_running_steps_per_client,
                                           parent_bytes=self.settings.max_parent_bytes, tools=self.tools)
                claimed += self.llm.claim(self.claimer.get(), self.name, self.worker_id or 0, free - len(claimed),
                                          self.tools)
            except StopRequested:
                return 0
            except StoreUnavailable as exc:
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
        limited = self.llm.wait_seconds(self.settings.poll_seconds)
        try:
            until = store.step_seconds_until_ready(self.claimer.conn, self.settings.max_running_steps_per_client,
                                                   self.tools)
        except StoreUnavailable as exc:
            self.claimer.broken(exc)
            return 0.1
        if until is None:
            return limited
        return min(limited, max(0.005, until))

    def _start(self, step: ClaimedStep) -> None:
        self.tasks.put(self.table.start(step, self._context(step)))

    def _context(self, step: ClaimedStep) -> StepContext:
        ctx = make_context(step, self.settings, lambda message: self._record_notification(step, message, ctx.cancelled),
                           self.chaos_rng, self.llm.pool.connection,
                           lambda level, message: self._record_log(step, level, message, ctx.cancelled))
        return ctx

    def _slot_loop(self) -> None:
        while (flight := self.tasks.get()) is not None:
            self._execute(flight)

    def _execute(self, flight: InFlight | None) -> None:
        """Run a step; record it from this thread when nobody else is recording, and run the child
        that transaction claimed right here: no thread hand-off on the chain's critical path."""
        while flight is not None:
            started = time.time()
            result = execute_step(flight.step, flight.ctx)
            if self.stamps is not None:
                self.stamps.add(flight, started, time.time())
            if result.give_back:
                self._give_back(flight, result.error or "database unavailable")
                return
            flight = self._settle(flight, result)

    def _settle(self, flight: InFlight, result: StepResult) -> InFlight | None:
        """Hand the outcome on. When no other handler is executing (a chain's hop) and the recorder
        connection is free, commit it at once from this slot (with whatever else is queued) and
        return the first step that transaction claimed. Otherwise queue it: the recorder thread
        batches what piles up (recording each result the moment it is ready under load made batches
        small and cost a commit each: ~60 % more record transactions in the throughput bench)."""
        idle = self.table.settle(flight)
        if idle is None:
            return None  # timed out: the timeout is its outcome
        if not idle or not self.record_lock.acquire(blocking=False):
            self.table.results.put(result)
            if idle:
                self.wake.set()  # every slot is free: claim now instead of after the recorder's commit
            return None
        try:
            flights = self._record([result, *self.table.drain_results()])
        finally:
            self.record_lock.release()
        if not flights:
            return None
        for other in flights[1:]:
            self.tasks.put(other)
        return flights[0]

    def _record_notification(self, step: ClaimedStep, message: str, cancelled: threading.Event) -> bool:
        return self.side_effects.call(lambda conn: notification_record(conn, step.idempotency_key, step.run_id,
                                                                       message, step.attempt), cancelled)

    def _record_log(self, step: ClaimedStep, level: str, message: str, cancelled: threading.Event) -> bool:
        """A `ctx.log` line as a `step_log` event; a lost database costs the line, never the step."""
        try:
            return self.side_effects.call(lambda conn: step_log(conn, step.id, step.run_id, step.attempt, self.name,
                                                                level, message), cancelled)
        except (StopRequested, StoreUnavailable):
            return False

    def _give_back(self, flight: InFlight, error: str) -> None:
        """The database was unavailable to the step's tool: release the step without using the
        attempt, so another attempt starts as soon as the database is back. Until the release is
        written the attempt stays in flight, so the reaper keeps renewing its lease; it stops trying
        when the attempt is taken away, times out, or the worker shuts down (which releases it)."""
        lease = [(flight.step.id, flight.step.attempt)]
        log.warning("step %s attempt %d: %s; releasing it without using the attempt",
                    flight.step.id, flight.step.attempt, error)
        while not (flight.ctx.cancelled.is_set() or flight.timed_out or self.shutdown.is_set()):
            try:
                self.side_effects.call(lambda conn: store.step_release(conn, self.name, lease,
                                                                       reason="database unavailable to the tool"),
                                       flight.ctx.cancelled)
                break
            except StoreUnavailable:
                continue  # still down: keep the attempt (and its lease) until it is back
            except Exception:  # noqa: BLE001 - never lose a slot thread; the lease expires instead
                log.exception("could not release step %s; leaving it to lease expiry", flight.step.id)
                break
        if self.shutdown.is_set():
            return  # drain_and_stop releases what is still in flight
        self.table.forget(flight)
        self.wake.set()

    # -- recording -----------------------------------------------------------------------------

    def _record_loop(self) -> None:
        while not self.shutdown.is_set():
            try:
                first = self.table.results.get(timeout=0.5)
            except queue.Empty:
                continue
            with self.record_lock:
                flights = self._record([first, *self.table.drain_results()])
            for flight in flights:
                self.tasks.put(flight)

    def _notify(self, steps_ready: bool) -> None:
        """After the claim's commit: announce its step_started rows."""
        try:
            store.notify_after_commit(self.claimer.get(), steps_ready)
        except StopRequested:
            pass

    def _record(self, batch: list[StepResult]) -> list[InFlight]:
        """Record the batch and, in the same transaction, claim as many steps as there are free
        slots; returns the claimed steps, entered in the table, for the caller to run. The caller
        holds `record_lock`. The wake-up NOTIFY rides in the same pipeline, behind the COMMIT."""
        summary, claimed = store.RecordSummary(0, 0), []
        limit = self.table.begin_recording(batch, claiming=not self.stopping.is_set())
        flights: list[InFlight] = []
        try:
            summary, claimed = self._record_with_retries(batch, limit)
            flights = [self.table.make(step, self._context(step)) for step in claimed]
        finally:
            self.table.end_recording(batch, limit, flights)
        if summary.discarded:
            log.warning("%d result(s) discarded: the step was taken away from this attempt", summary.discarded)
        if len(claimed) >= limit or self.stopping.is_set():
            # More may be ready than this claim took (or shutdown waits on progress): let the claim
            # loop look. A claim that took fewer than it could left nothing ready behind.
            self.wake.set()
        return flights

    def _record_with_retries(self, batch: list[StepResult], limit: int) -> tuple[store.RecordSummary, list[ClaimedStep]]:
        """Reconnect through outages; retry a deadlock a few times with backoff. On anything else the
        attempts stay running in the database: their leases expire and they are retried."""
        conflicts = 0
        while True:
            try:
                return store.step_record_and_claim(
                    self.recorder.get(), self.name, self.worker_id or 0, batch, limit, self.settings.lease_seconds,
                    True, client_cap=self.settings.max_running_steps_per_client,  # True: announce
                    parent_bytes=self.settings.max_parent_bytes, tools=self.tools)
            except StopRequested:
                break
            except StoreUnavailable as exc:
                self.recorder.broken(exc)
            except RetryableConflict as exc:
                conflicts += 1
                if conflicts > RECORD_RETRIES:
                    log.error("%s %d times while recording %d result(s); leaving them to lease expiry",
                              exc, conflicts, len(batch))
                    break
                pause = RECORD_RETRY_BASE_SECONDS * 2 ** (conflicts - 1)
                log.info("%s while recording %d result(s); retry %d in %.3fs", exc, len(batch), conflicts, pause)
                if self.shutdown.wait(pause * (0.5 + random.random())):  # jitter: do not meet again
                    break
            except Exception:  # noqa: BLE001 - never lose the recorder thread to one bad batch
                log.exception("could not record %d result(s); leaving them to lease expiry", len(batch))
                self.recorder.close()
                break
        return store.RecordSummary(0, 0), []

    # -- listening -----------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        """Wake the claim loop on NOTIFY; keep the liveness connection (and its lock) alive."""
        while not self.shutdown.is_set():
            try:
                conn = self.liveness.get()
                if store.wait_for_notify(conn, timeout=1.0):
                    self.wake.set()
                if self.liveness.conn is not None:
                    store.connection_check(conn)  # notice a dead server even when nothing is notified
            except StopRequested:
                return
            except StoreUnavailable as exc:
                if not self.shutdown.is_set():
                    self.liveness.broken(exc)
