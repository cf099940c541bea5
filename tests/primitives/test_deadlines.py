"""Run deadlines and cascading cancel: unfinished steps are cancelled, a running handler sees
`ctx.cancelled` within a heartbeat, its late result is discarded (audited), waits are closed, and
nothing of the run starts afterwards."""
from __future__ import annotations

import threading

import pytest

from engine import store
from engine.errors import Conflict
from engine.model import RunStatus, StepStatus
from engine.store.timers import expire_timers
from engine.submit import submit_run
from engine.verify import verify_run
from tests.chaos.support import run_events, wait_event, wait_registered
from tests.helpers import make_run, step, wait_for

SAW_CANCEL_WITHIN = 30.0  # a bound for the test only: the heartbeat is 0.5 s (tests.helpers.FAST_ENV)


def stubborn_run(deadline: float | None = None) -> dict:
    """A handler that ignores its input and only watches ctx.cancelled; a child after it; a wait."""
    body = make_run(step("tool_call.stubborn", tool="watch_cancel"),
                    step("tool_call.after", ["tool_call.stubborn"], tool="transform"),
                    {"name": "wait.approve", "input": {"prompt": "never answered"}},
                    goal="cancelled in flight")
    if deadline is not None:
        body["deadlineSeconds"] = deadline
    return body


@pytest.fixture
def watcher(tools) -> dict[str, threading.Event]:
    seen = {"started": threading.Event(), "cancelled": threading.Event()}

    def watch_cancel(ctx) -> dict:
        seen["started"].set()
        if ctx.cancelled.wait(SAW_CANCEL_WITHIN):
            seen["cancelled"].set()
        return {"finished": True}  # a late result: it must be discarded
    tools.register("watch_cancel", watch_cancel)
    return seen


def assert_cancelled_cleanly(conn, run_id, end_event: str) -> None:
    discarded = wait_event(conn, run_id, "step_result_discarded", 30)
    assert discarded.step == "tool_call.stubborn" and discarded.detail["currentStatus"] == "cancelled"
    end = run_events(conn, run_id, end_event)[0]
    assert not [e for e in run_events(conn, run_id, "step_started") if e.id > end.id], "a step started after the end"
    steps = {s.name: s.status for s in store.run_get(conn, run_id).steps}
    assert steps == {"tool_call.stubborn": StepStatus.CANCELLED, "tool_call.after": StepStatus.CANCELLED,
                     "wait.approve": StepStatus.CANCELLED}
    with pytest.raises(Conflict):
        store.step_signal(conn, run_id, "wait.approve", {"approved": True}, "late reviewer")
    assert verify_run(conn, str(run_id)) == []


def test_deadline_fails_the_run_and_the_running_handler_sees_cancelled(conn, settings, watcher, inprocess_worker):
    inprocess_worker()
    run_id, _ = submit_run(conn, stubborn_run(deadline=1.5), settings)
    assert watcher["started"].wait(30)
    assert watcher["cancelled"].wait(SAW_CANCEL_WITHIN), "the handler never saw ctx.cancelled"
    run = wait_for(lambda: (r := store.run_get(conn, run_id)).terminal and r, 30, "the run to end")
    assert run.status == RunStatus.FAILED and run.end_reason == "deadline"
    assert store.run_links(conn, run_id).end_reason == "deadline"
    failed = run_events(conn, run_id, "run_failed")[0]
    assert failed.detail == {"reason": "deadline"}
    assert run_events(conn, run_id, "run_deadline_exceeded")[0].detail["stepsCancelled"] == 3
    assert_cancelled_cleanly(conn, run_id, "run_deadline_exceeded")


def test_cancel_cascades_to_running_handler_waits_and_children(conn, settings, watcher, inprocess_worker):
    inprocess_worker()
    run_id, _ = submit_run(conn, stubborn_run(), settings)
    assert watcher["started"].wait(30)
    wait_for(lambda: any(s.status == StepStatus.WAITING for s in store.run_get(conn, run_id).steps), 30, "the wait")
    assert store.run_cancel(conn, run_id, by="test") == 3
    assert watcher["cancelled"].wait(SAW_CANCEL_WITHIN), "the handler never saw ctx.cancelled"
    assert store.run_get(conn, run_id).status == RunStatus.CANCELLED
    assert_cancelled_cleanly(conn, run_id, "run_cancelled")


def test_a_run_that_finishes_before_its_deadline_is_untouched(conn, settings, spawn):
    body = make_run(step("tool_call.quick", tool="fetch_data"))
    body["deadlineSeconds"] = 2
    # The worker is up before the run starts its clock: a slow process start must not eat the deadline.
    wait_registered(conn, spawn("w1"))
    run_id, _ = submit_run(conn, body, settings)
    wait_for(lambda: store.run_get(conn, run_id).status == RunStatus.COMPLETED, 30, "the run to complete")
    # Past the deadline, a reaper pass leaves the completed run alone.
    wait_for(lambda: conn.execute("SELECT now() > deadline_at AS past FROM runs WHERE id = %s",
                                  (run_id,)).fetchone()["past"], 10, "the deadline to pass", interval=0.1)
    assert expire_timers(conn, "test-reaper") == (0, 0)
    assert store.run_get(conn, run_id).status == RunStatus.COMPLETED
    assert not run_events(conn, run_id, "run_deadline_exceeded")
    assert verify_run(conn, str(run_id)) == []
