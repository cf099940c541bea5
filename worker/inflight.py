"""The worker's in-flight table: the steps this process holds a lease on, from claim to recorded
outcome, with the slot accounting that decides how many more it may claim. One lock guards it; the
claim loop, the slot threads, the recorder and the reaper only go through its methods.

Life of an entry: `start` (claimed) → `finish` (the handler returned; its result waits in
`results` for the recorder) or `settle` (the slot records its result itself) → `begin_recording`
→ `end_recording` (committed: removed). A timeout
(`expire`) records a failure instead and drops the handler's eventual result. Accounting, with
`concurrency` slots (see docs/ARCHITECTURE.md, "Slot accounting"):

- executing handlers (not finished, not timed out) never exceed `concurrency`;
- entries of any kind (including finished results waiting for the recorder's commit) never exceed
  `2 × concurrency`, which bounds what a slow database lets pile up;
- `reserved` counts slots the recorder is claiming for inside its transaction right now, so the
  claim loop does not claim the same slots at the same time.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.store import ClaimedStep, StepResult
from engine.tools import StepContext
from worker.slots import failure


@dataclass
class InFlight:
    step: ClaimedStep
    ctx: StepContext
    deadline: float  # clock() after which the attempt has timed out
    timed_out: bool = False
    finished: bool = False  # the handler returned; its result waits for the recorder
    recording: bool = False  # its result is in the recorder's transaction right now
    started: float = field(default_factory=time.monotonic)

    @property
    def lease(self) -> tuple[int, int]:
        return self.step.id, self.step.attempt


class InFlightTable:
    def __init__(self, concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.lock = threading.Lock()
        self.flights: dict[int, InFlight] = {}
        self.reserved = 0
        self.results: queue.Queue[StepResult] = queue.Queue()  # outcomes awaiting the recorder

    # -- accounting ----------------------------------------------------------------------------

    def free_slots(self) -> int:
        """Slots whose handler is not running. A finished step waiting for the recorder's commit
        keeps its lease (and its heartbeat) but not its slot, so claiming overlaps recording."""
        with self.lock:
            return self._free_locked(recording=0)

    def _free_locked(self, recording: int) -> int:
        executing = sum(1 for f in self.flights.values() if not f.timed_out and not f.finished)
        waiting = len(self.flights) - recording
        return min(self.concurrency - executing, 2 * self.concurrency - waiting) - self.reserved

    def active_count(self) -> int:
        """Entries whose attempt is still this worker's to finish (not timed out)."""
        with self.lock:
            return sum(1 for f in self.flights.values() if not f.timed_out)

    def awaiting_record(self) -> bool:
        """Some finished handler's result is not committed yet."""
        with self.lock:
            waiting = any(f.finished for f in self.flights.values())
        return waiting or not self.results.empty()

    # -- life of an entry ----------------------------------------------------------------------

    def make(self, step: ClaimedStep, ctx: StepContext) -> InFlight:
        """An entry for a claimed step, its timeout counted from now (entered by `start` or
        `end_recording`)."""
        return InFlight(step, ctx, deadline=self.clock() + step.timeout_seconds)

    def start(self, step: ClaimedStep, ctx: StepContext) -> InFlight:
        """Enter a claimed step."""
        flight = self.make(step, ctx)
        with self.lock:
            self.flights[step.id] = flight
        return flight

    def finish(self, flight: InFlight, result: StepResult) -> bool:
        """The handler returned `result`: queue it for the recorder, unless the attempt already
        timed out (its timeout is its outcome; the entry goes). Returns True when no handler is
        executing any more, so the claim loop can claim at once instead of after the commit."""
        idle = self.settle(flight)
        if idle is None:
            return False
        self.results.put(result)
        return idle

    def settle(self, flight: InFlight) -> bool | None:
        """The handler returned: mark the entry finished, without queueing its result (a slot that
        records its own result calls this, then `begin_recording`). None when the attempt already
        timed out (the entry goes, there is nothing to record); else whether no handler executes."""
        with self.lock:
            if flight.timed_out:
                if self.flights.get(flight.step.id) is flight:
                    del self.flights[flight.step.id]
                return None
            flight.finished = True
            return not any(not f.finished and not f.timed_out for f in self.flights.values())

    def drain_results(self) -> list[StepResult]:
        """Every result queued right now, without waiting."""
        batch: list[StepResult] = []
        while True:
            try:
                batch.append(self.results.get_nowait())
            except queue.Empty:
                return batch

    def forget(self, flight: InFlight) -> None:
        """Drop an attempt that was handed back without a result (released to another attempt)."""
        with self.lock:
            if self.flights.get(flight.step.id) is flight:
                del self.flights[flight.step.id]

    def expire(self) -> list[InFlight]:
        """Mark attempts past their deadline timed out, tell their handlers to stop, and queue a
        failed outcome for each; a handler's later result is dropped by `finish`."""
        now = self.clock()
        with self.lock:
            expired = [f for f in self.flights.values() if not f.timed_out and not f.finished and now > f.deadline]
            for flight in expired:
                flight.timed_out = True
                flight.ctx.cancelled.set()
        for flight in expired:
            self.results.put(failure(flight.step, f"timed out after {flight.step.timeout_seconds:g}s"))
        return expired

    def begin_recording(self, batch: list[StepResult], claiming: bool) -> int:
        """The recorder takes `batch`: mark its entries as being recorded and, when `claiming`,
        reserve the slots it may claim in the same transaction. Returns that claim limit."""
        with self.lock:
            for result in batch:
                flight = self.flights.get(result.step_id)
                if flight is not None and flight.step.attempt == result.attempt:
                    flight.recording = True
            limit = max(0, self._free_locked(recording=len(batch))) if claiming else 0
            self.reserved += limit
            return limit

    def end_recording(self, batch: list[StepResult], limit: int, claimed: Iterable[InFlight] = ()) -> None:
        """The batch's transaction ended: drop its entries, enter the steps it claimed, and give
        back the reservation, in one step so the claim loop never sees the slots twice."""
        with self.lock:
            for result in batch:
                flight = self.flights.get(result.step_id)
                if flight is not None and flight.step.attempt == result.attempt:
                    del self.flights[result.step_id]
            for flight in claimed:
                self.flights[flight.step.id] = flight
            self.reserved -= limit

    # -- leases --------------------------------------------------------------------------------

    def leases(self) -> list[tuple[int, int]]:
        """(step id, attempt) of every attempt whose lease the heartbeat must renew."""
        with self.lock:
            return [f.lease for f in self.flights.values() if not f.timed_out]

    def lost(self, renewed: list[tuple[int, int]], held: set[int]) -> list[int]:
        """After a heartbeat that renewed `renewed` and found only `held` still ours: the steps
        whose lease was really taken away (reclaimed, cancelled). Those are told to stop. A lease
        not held because this worker recorded the outcome meanwhile is not lost: its entry is gone
        or being recorded (and if the record finds the step taken, the recorder reports it)."""
        lost = []
        with self.lock:
            for step_id, attempt in renewed:
                if step_id in held:
                    continue
                flight = self.flights.get(step_id)
                if flight is None or flight.step.attempt != attempt or flight.recording:
                    continue
                flight.ctx.cancelled.set()
                lost.append(step_id)
        return sorted(lost)

    def cancel_all(self) -> list[tuple[int, int]]:
        """Shutdown: tell every handler to stop; returns the leases left to release."""
        with self.lock:
            for flight in self.flights.values():
                flight.ctx.cancelled.set()
            return [f.lease for f in self.flights.values()]
