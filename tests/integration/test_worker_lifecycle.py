"""The worker process: graceful SIGTERM, and the exactly-once `notify` side effect."""
from __future__ import annotations

import signal

from engine import store
from engine.store.notifications import notification_record, notifications_for_run
from engine.submit import submit_run
from engine.tools import StepContext
from engine.tools.builtin import notify
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for


def running_step(conn, run_id):
    steps = store.run_get(conn, run_id).steps
    return next((s for s in steps if s.status == "running"), None)


def test_sigterm_releases_unfinished_step_to_another_worker_at_once(conn, settings, spawn):
    # Leases of five minutes: if the step were not released, the other worker could only take it
    # after the lease expired, and the wait below would time out long before.
    long_lease = {"LEASE_SECONDS": "300", "SHUTDOWN_GRACE_SECONDS": "0.5"}
    run_id, _ = submit_run(conn, make_run(step("tool_call.long", tool="sleep", seconds=3)), settings)
    first = spawn("w-first", **long_lease)
    wait_for(lambda: running_step(conn, run_id), 20, "the step to start on the first worker")
    spawn("w-second", **long_lease)
    first.signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0
    run = wait_for(lambda: (r := store.run_get(conn, run_id)).status == "completed" and r, 30,
                   "the second worker to finish the released step")
    events = store.events_after(conn, run_id)
    released = [e for e in events if e.type == "step_reclaimed"]
    assert released and released[0].detail["reason"] == "released on shutdown"
    assert [e.worker for e in events if e.type == "step_succeeded"] == ["w-second"]
    assert run.steps[0].attempt == 2
    assert verify_run(conn, str(run_id)) == []


def test_sigterm_lets_a_short_step_finish_within_the_grace_period(conn, settings, spawn):
    run_id, _ = submit_run(conn, make_run(step("tool_call.short", tool="sleep", seconds=1)), settings)
    worker = spawn("w-graceful", SHUTDOWN_GRACE_SECONDS="20")
    wait_for(lambda: running_step(conn, run_id), 20, "the step to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    run = store.run_get(conn, run_id)
    assert run.status == "completed" and run.steps[0].attempt == 1
    kinds = [e.type for e in store.events_after(conn, run_id)]
    assert "step_reclaimed" not in kinds


def test_notify_sends_once_per_step_even_when_the_step_runs_twice(conn, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.tell", tool="notify", message="hello")), settings)
    outputs = []
    for attempt in (1, 2):  # the same step executed twice (e.g. a zombie and its replacement)
        ctx = StepContext(run_id=run_id, step_name="tool_call.tell", input={"message": "hello"}, parents={},
                          attempt=attempt, settings=settings,
                          record_notification=lambda m, a=attempt: notification_record(
                              conn, f"{run_id}:tool_call.tell", run_id, m, a))
        outputs.append(notify(ctx))
    assert [o["duplicate"] for o in outputs] == [False, True]
    sent = notifications_for_run(conn, run_id)
    assert len(sent) == 1 and sent[0]["attempt"] == 1 and sent[0]["idempotency_key"] == f"{run_id}:tool_call.tell"
