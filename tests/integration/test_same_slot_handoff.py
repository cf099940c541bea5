"""The same-slot hand-off: a slot that finds the recorder connection free records its own result
and runs the child its transaction claimed, on the same thread. Driven in-process, one call at a
time (no worker threads), so each path is taken for certain."""
from __future__ import annotations

import psycopg
import pytest

from engine import store
from engine.model import RunStatus, StepStatus
from engine.store import StepResult
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import chain, wait_for
from worker.inflight import InFlight
from worker.slots import execute_step
from worker.worker import Worker


def _worker(settings: object, name: str) -> Worker:
    worker = Worker(settings, name, concurrency=2)  # type: ignore[arg-type]
    worker.liveness.get()  # registers and takes its liveness lock; no threads started
    return worker


def _close(worker: Worker) -> None:
    worker.shutdown.set()
    for connection in (worker.claimer, worker.recorder, worker.reaper.conn, worker.side_effects, worker.liveness):
        connection.close()


def _claimed(worker: Worker) -> InFlight:
    assert worker.run_once() == 1
    flight = worker.tasks.get_nowait()
    assert flight is not None
    return flight


def _events(conn: object, run_id: object) -> list[tuple[str, str | None, int | None]]:
    return [(e.type, e.step, e.attempt) for e in store.events_after(conn, str(run_id), 0)]  # type: ignore[arg-type]


def test_a_finished_step_starts_its_child_on_the_same_slot_with_fencing_and_audit(conn, settings):
    run_id, _ = submit_run(conn, chain(3), settings)
    worker = _worker(settings, "same-slot")
    try:
        flight: InFlight | None = _claimed(worker)
        ran = []
        while flight is not None:  # what a slot thread does: run, settle, run what settling returned
            ran.append((flight.step.name, flight.step.attempt))
            flight = worker._settle(flight, execute_step(flight.step, flight.ctx))
            assert worker.tasks.empty()  # the child came back to this slot, not through the queue
        assert ran == [("tool_call.s0", 1), ("tool_call.s1", 1), ("tool_call.s2", 1)]
        assert not worker.table.flights and worker.table.reserved == 0
    finally:
        _close(worker)
    run = store.run_get(conn, run_id)
    assert run.status == RunStatus.COMPLETED and all(s.status == StepStatus.SUCCEEDED for s in run.steps)
    events = _events(conn, run_id)
    # Each child is made ready, then started (claimed with its lease and attempt 1) by the parent's commit.
    assert events.index(("step_ready", "tool_call.s1", None)) < events.index(("step_started", "tool_call.s1", 1))
    assert events[-1][0] == "run_completed"
    assert verify_run(conn, str(run_id)) == []


def test_a_same_slot_result_whose_step_was_taken_away_is_discarded_and_starts_nothing(conn, settings):
    run_id, _ = submit_run(conn, chain(2), settings)
    worker = _worker(settings, "fenced")
    try:
        flight = _claimed(worker)
        store.run_cancel(conn, run_id, by="test")  # the attempt is taken away while it runs
        assert worker._settle(flight, execute_step(flight.step, flight.ctx)) is None
        assert not worker.table.flights and worker.tasks.empty()
    finally:
        _close(worker)
    assert ("step_result_discarded", "tool_call.s0", 1) in _events(conn, run_id)
    assert store.run_get(conn, run_id).status == RunStatus.CANCELLED
    assert verify_run(conn, str(run_id)) == []


def test_while_a_record_is_in_progress_a_result_waits_for_the_recorder_thread(conn, settings):
    run_id, _ = submit_run(conn, chain(2), settings)
    worker = _worker(settings, "queued")
    try:
        flight = _claimed(worker)
        with worker.record_lock:  # someone else is recording
            assert worker._settle(flight, execute_step(flight.step, flight.ctx)) is None
        assert [r.step_id for r in worker.table.results.queue] == [flight.step.id]
        # What the recorder thread does with it: record the batch; the child comes back to be queued.
        with worker.record_lock:
            children = worker._record(worker.table.drain_results())
        assert [c.step.name for c in children] == ["tool_call.s1"]
        assert worker._settle(children[0], execute_step(children[0].step, children[0].ctx)) is None
    finally:
        _close(worker)
    wait_for(lambda: store.run_get(conn, run_id).status == RunStatus.COMPLETED, 10, "the run to complete")
    assert verify_run(conn, str(run_id)) == []


def test_a_record_that_fails_mid_pipeline_is_rolled_back_and_the_connection_stays_usable(conn, settings, db_url):
    run_id, _ = submit_run(conn, chain(2), settings)
    with store.connect(db_url) as recorder:
        worker_id = store.worker_register(recorder, "pipeline", "test-host", 1)
        [first] = store.step_claim(recorder, "pipeline", worker_id, 1, 300)
        bad = StepResult(first.id, first.attempt, ok=True, output_json="{not json", run_id=first.run_id)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            store.step_record_and_claim(recorder, "pipeline", worker_id, [bad], 1, 300, True)
        assert recorder.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # rolled back
        assert store.run_get(conn, run_id).steps[0].status == StepStatus.RUNNING  # nothing was recorded
        good = StepResult(first.id, first.attempt, ok=True, output_json="{}", run_id=first.run_id)
        summary, claimed = store.step_record_and_claim(recorder, "pipeline", worker_id, [good], 1, 300, True)
        assert summary.discarded == 0 and [c.name for c in claimed] == ["tool_call.s1"]
        done = StepResult(claimed[0].id, claimed[0].attempt, ok=True, output_json="{}", run_id=run_id)
        store.step_record_and_claim(recorder, "pipeline", worker_id, [done], 0, 300, True)
    assert store.run_get(conn, run_id).status == RunStatus.COMPLETED
    assert verify_run(conn, str(run_id)) == []
