"""Store reads return typed model records (UUIDs, aware datetimes, state enums), and enum members
work as SQL parameters. No worker runs here: states are set up by submitting and, for a dead
letter, by writing the row directly."""
from __future__ import annotations

from datetime import datetime
from uuid import UUID

from engine import store
from engine.model import (
    DeadLetter,
    Event,
    QueueSnapshot,
    Run,
    RunStatus,
    RunSummary,
    Step,
    StepStatus,
    WorkerInfo,
    WorkerStatus,
)
from engine.store.dashboard import dead_letters_list, queue_snapshot
from engine.store.runs import steps_by_id
from engine.submit import submit_run
from tests.helpers import make_run, step


def submit_two_steps(conn, settings) -> UUID:
    body = make_run(step("tool_call.a", tool="fetch_data"), step("tool_call.b", ["tool_call.a"], tool="transform"))
    run_id, _ = submit_run(conn, body, settings)
    return run_id


def test_a_run_reads_back_as_a_run_with_typed_steps(conn, settings):
    run_id = submit_two_steps(conn, settings)
    run = store.run_get(conn, str(run_id))
    assert isinstance(run, Run) and run.id == run_id and run.status is RunStatus.RUNNING and not run.terminal
    assert isinstance(run.created_at, datetime) and run.created_at.tzinfo is not None and run.finished_at is None
    first, second = run.steps
    assert isinstance(first, Step) and (first.status, second.status) == (StepStatus.READY, StepStatus.PENDING)
    assert second.depends_on == ("tool_call.a",) and first.depends_on == ()
    assert (first.run_id, first.attempt, first.attempt_limit, first.tool) == (run_id, 0, first.max_attempts, "fetch_data")
    assert steps_by_id(conn, [second.id, 987654321]) == {second.id: second}


def test_enum_members_filter_lists_as_sql_parameters(conn, settings):
    run_id = submit_two_steps(conn, settings)
    listed = store.run_list(conn, status=RunStatus.RUNNING)
    assert [r.id for r in listed] == [run_id] and isinstance(listed[0], RunSummary)
    assert (listed[0].status, listed[0].step_count, listed[0].succeeded, listed[0].dead) == (RunStatus.RUNNING, 2, 0, 0)
    assert store.run_list(conn, status=RunStatus.COMPLETED) == []
    assert store.run_ids(conn, status=RunStatus.RUNNING) == [str(run_id)]


def test_events_read_back_as_events(conn, settings):
    run_id = submit_two_steps(conn, settings)
    events = store.events_after(conn, run_id)
    assert all(isinstance(e, Event) and e.run_id == run_id and e.ts.tzinfo is not None for e in events)
    assert [(e.type, e.step) for e in events] == [("run_created", None), ("step_ready", "tool_call.a")]
    assert events[0].detail == {"goal": "test run", "steps": 2}


def test_a_registered_worker_reads_back_as_worker_info(db_url, conn):
    with store.connect(db_url) as liveness:
        worker_id = store.worker_register(liveness, "w-typed", "box", 4242)
        (worker,) = [w for w in store.workers_list(conn) if w.name == "w-typed"]
        assert isinstance(worker, WorkerInfo) and worker.id == worker_id
        assert (worker.status, worker.pid, worker.host, worker.running) == (WorkerStatus.RUNNING, 4242, "box", ())
        store.worker_stopped(liveness, worker_id, "w-typed")
    assert [w for w in store.workers_list(conn) if w.name == "w-typed"] == []
    (gone,) = [w for w in store.workers_list(conn, include_gone=True) if w.name == "w-typed"]
    assert gone.status is WorkerStatus.STOPPED


def test_dead_letters_and_queue_counts_are_typed(conn, settings):
    run_id = submit_two_steps(conn, settings)
    conn.execute("UPDATE steps SET status = 'dead_letter', attempt = 1, last_error = 'boom', finished_at = now() "
                 "WHERE run_id = %s AND name = 'tool_call.a'", (run_id,))
    (dead,) = dead_letters_list(conn)
    assert isinstance(dead, DeadLetter)
    assert (dead.name, dead.run_id, dead.run_status, dead.error, dead.attempt) == (
        "tool_call.a", run_id, RunStatus.RUNNING, "boom", 1)
    snapshot = queue_snapshot(conn)
    assert isinstance(snapshot, QueueSnapshot) and set(snapshot.steps) == set(StepStatus)
    assert snapshot.steps[StepStatus.DEAD_LETTER] == 1 and snapshot.steps[StepStatus.PENDING] == 1
    assert snapshot.runs == {RunStatus.RUNNING: 1, RunStatus.COMPLETED: 0, RunStatus.FAILED: 0, RunStatus.CANCELLED: 0}
