"""A crash is charged to the run that caused it (issue 13, point 2): a visitor's crash step kills
the worker that also runs someone else's steps; those steps go back to ready without using an
attempt, so a one-attempt run beside a poison pill still completes."""
from __future__ import annotations

import pytest

from engine import store
from engine.model import StepStatus
from engine.submit import submit_run
from tests.chaos.support import (
    Supervisor,
    assert_invariants,
    run_events,
    wait_event,
    wait_registered,
    wait_terminal,
)
from tests.helpers import make_run, step

pytestmark = pytest.mark.chaos


def test_steps_that_die_with_a_crash_steps_worker_do_not_use_an_attempt(conn, settings, spawn):
    procs = [spawn("w1", 8)]  # one worker: every crash takes the bystander's steps down with it
    wait_registered(conn, *procs)
    with Supervisor(procs):
        bystander_id, _ = submit_run(conn, make_run(
            *[step(f"tool_call.slow{i}", tool="fetch_data", sleepSeconds=1.5, max_attempts=1) for i in range(3)],
            step("tool_call.merge", [f"tool_call.slow{i}" for i in range(3)], tool="transform", max_attempts=1),
            goal="one attempt each"), settings)
        wait_event(conn, bystander_id, "step_started")
        poison_id, _ = submit_run(conn, make_run(
            step("tool_call.poison", tool="fetch_data", crash=True, max_attempts=3), goal="poison"), settings)
        statuses = wait_terminal(conn, [poison_id, bystander_id], 90)
        wait_registered(conn, *procs)

    assert statuses == {str(poison_id): "failed", str(bystander_id): "completed"}
    poison = store.run_get(conn, poison_id).steps[0]
    assert (poison.status, poison.reclaims) == (StepStatus.DEAD_LETTER, 3)
    assert "worker crashed 3 times" in poison.error
    assert all(e.detail["countsAsAttempt"] for e in run_events(conn, poison_id, "step_reclaimed"))
    spared = run_events(conn, bystander_id, "step_reclaimed")
    assert spared, "the crash never caught a bystander step mid-flight"
    assert not any(e.detail["countsAsAttempt"] for e in spared)
    assert all(s.reclaims == 0 for s in store.run_get(conn, bystander_id).steps)
    assert_invariants(conn, [poison_id, bystander_id])


def test_a_crash_with_no_crash_step_to_blame_is_charged_to_every_step_it_interrupted(conn, settings, spawn):
    """The Kill button or the OOM killer: the cause is unknown, so crashes still count."""
    procs = [spawn("w1", 4)]
    wait_registered(conn, *procs)
    with Supervisor(procs) as supervisor:
        run_id, _ = submit_run(conn, make_run(
            step("tool_call.slow", tool="fetch_data", sleepSeconds=30, max_attempts=1), goal="killed"), settings)
        wait_event(conn, run_id, "step_started")
        with supervisor.lock:
            procs[0].kill()
        statuses = wait_terminal(conn, [run_id], 30)
    assert statuses == {str(run_id): "failed"}
    [reclaim] = run_events(conn, run_id, "step_reclaimed")
    assert reclaim.detail["countsAsAttempt"] is True
    assert_invariants(conn, [run_id])
