"""The worker's in-flight table, without a database: slot accounting (executing handlers, results
waiting for the recorder, the recorder's reservation), timeouts, and which leases count as lost."""
from __future__ import annotations

import uuid

from engine.config import Settings
from engine.store import ClaimedStep, StepResult
from engine.tools import StepContext
from tests.helpers import FakeClock
from worker.inflight import InFlight, InFlightTable

RUN = uuid.uuid4()


def claimed(step_id: int, attempt: int = 1, timeout: float = 10.0, limit: int = 3) -> ClaimedStep:
    return ClaimedStep(id=step_id, run_id=RUN, name=f"tool_call.s{step_id}", kind="tool_call", tool="sleep",
                       input={}, attempt=attempt, attempt_limit=limit, timeout_seconds=timeout,
                       backoff_base=1.0, backoff_max=10.0, parents={})


def context(step: ClaimedStep) -> StepContext:
    return StepContext(run_id=step.run_id, step_name=step.name, input={}, parents={}, attempt=step.attempt,
                       settings=Settings())


def start(table: InFlightTable, step_id: int, **kwargs: float) -> InFlight:
    step = claimed(step_id, **kwargs)  # type: ignore[arg-type]
    return table.start(step, context(step))


def ok(flight: InFlight) -> StepResult:
    return StepResult(flight.step.id, flight.step.attempt, ok=True, output_json="{}", run_id=RUN)


def drain(table: InFlightTable) -> list[StepResult]:
    out = []
    while not table.results.empty():
        out.append(table.results.get_nowait())
    return out


def test_executing_handlers_use_slots_and_finished_ones_give_them_back():
    table = InFlightTable(concurrency=2)
    assert table.free_slots() == 2
    a, b = start(table, 1), start(table, 2)
    assert table.free_slots() == 0
    assert table.finish(a, ok(a)) is False  # b still executing
    assert table.free_slots() == 1          # a waits for the recorder but holds no slot
    assert table.finish(b, ok(b)) is True   # nothing executes: the claim loop may claim at once
    assert table.free_slots() == 2
    assert table.awaiting_record() and [r.step_id for r in drain(table)] == [1, 2]
    assert table.leases() == [(1, 1), (2, 1)]  # waiting results keep their leases renewed


def test_results_waiting_for_the_recorder_are_capped_at_twice_the_slots():
    table = InFlightTable(concurrency=2)
    for step_id in range(1, 5):
        flight = start(table, step_id)
        table.finish(flight, ok(flight))
    # Four results await a slow recorder: no handler runs, yet nothing more may be claimed.
    assert table.free_slots() == 0
    batch = drain(table)
    # While they are in the recorder's transaction they count as leaving: it may claim 2.
    assert table.begin_recording(batch, claiming=True) == 2
    assert table.reserved == 2 and table.free_slots() == -2  # the claim loop claims nothing meanwhile
    table.end_recording(batch, 2, [table.make(claimed(5), context(claimed(5))),
                                   table.make(claimed(6), context(claimed(6)))])
    assert table.reserved == 0
    assert sorted(table.flights) == [5, 6] and table.free_slots() == 0
    assert not table.awaiting_record()


def test_a_recorder_that_may_not_claim_reserves_nothing():
    table = InFlightTable(concurrency=4)
    flight = start(table, 1)
    table.finish(flight, ok(flight))
    batch = drain(table)
    assert table.begin_recording(batch, claiming=False) == 0
    table.end_recording(batch, 0)
    assert table.flights == {} and table.free_slots() == 4


def test_a_timed_out_attempt_frees_its_slot_queues_a_failure_and_its_late_result_is_dropped():
    clock = FakeClock()
    table = InFlightTable(concurrency=1, clock=clock)
    flight = start(table, 1, timeout=5, limit=3)
    clock.advance(4.9)
    assert table.expire() == []
    clock.advance(0.2)
    assert table.expire() == [flight]
    assert flight.ctx.cancelled.is_set() and table.free_slots() == 1
    assert table.active_count() == 0 and table.leases() == []
    [failed] = drain(table)
    assert not failed.ok and "timed out after 5s" in failed.error and not failed.dead_letter
    assert table.finish(flight, ok(flight)) is False  # the handler's late result
    assert drain(table) == [] and 1 not in table.flights
    assert table.expire() == []  # never twice


def test_a_finished_attempt_does_not_time_out_while_it_waits_for_the_recorder():
    clock = FakeClock()
    table = InFlightTable(concurrency=1, clock=clock)
    flight = start(table, 1, timeout=1)
    table.finish(flight, ok(flight))
    clock.advance(10)
    assert table.expire() == []
    assert [r.ok for r in drain(table)] == [True]


def test_a_lease_missing_because_this_worker_recorded_the_step_is_not_lost():
    table = InFlightTable(concurrency=4)
    recorded, recording, running, taken = (start(table, i) for i in (1, 2, 3, 4))
    renewed = table.leases()
    # Meanwhile: 1's outcome was committed (entry gone), 2's is in the recorder's transaction,
    # 4 was reclaimed by another worker (the heartbeat found it no longer ours); 3 still holds.
    for flight in (recorded, recording):
        table.finish(flight, ok(flight))
    batch = drain(table)
    table.begin_recording(batch, claiming=False)
    table.end_recording(batch[:1], 0)
    assert table.lost(renewed, held={3}) == [4]
    assert taken.ctx.cancelled.is_set()
    assert not recording.ctx.cancelled.is_set() and not running.ctx.cancelled.is_set()


def test_a_newer_attempt_of_the_same_step_is_not_confused_with_the_lost_one():
    table = InFlightTable(concurrency=2)
    start(table, 1, attempt=1)
    renewed = table.leases()
    table.flights.pop(1)
    newer = start(table, 1, attempt=2)  # reclaimed, then claimed again by this worker
    assert table.lost(renewed, held=set()) == []
    assert not newer.ctx.cancelled.is_set()


def test_cancel_all_stops_every_handler_and_returns_the_leases_to_release():
    table = InFlightTable(concurrency=2)
    a, b = start(table, 1), start(table, 2, attempt=3)
    assert sorted(table.cancel_all()) == [(1, 1), (2, 3)]
    assert a.ctx.cancelled.is_set() and b.ctx.cancelled.is_set()
