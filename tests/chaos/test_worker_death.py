"""A worker killed with SIGKILL in the middle of a step: its liveness lock is dropped with its
connection, another worker's reaper reclaims the step at once, and the crash uses up an attempt."""
from __future__ import annotations

import pytest

from engine import store
from engine.submit import submit_run
from tests.chaos.support import (
    assert_invariants,
    by_name,
    kill_and_time,
    run_events,
    seconds_since,
    wait_event,
    wait_registered,
    wait_terminal,
)
from tests.helpers import make_run, step

pytestmark = pytest.mark.chaos


def test_killed_workers_step_is_reclaimed_and_rerun_by_the_other_worker(conn, settings, spawn, capsys):
    procs = [spawn("w1", 1), spawn("w2", 1)]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, make_run(
        step("tool_call.long", tool="sleep", seconds=2),
        step("tool_call.after", ["tool_call.long"], tool="fetch_data"),
    ), settings)

    started = wait_event(conn, run_id, "step_started")
    victim = by_name(procs, started.worker)
    survivor = next(p for p in procs if p is not victim)
    killed_at = kill_and_time(victim)
    reclaimed = wait_event(conn, run_id, "step_reclaimed")

    assert wait_terminal(conn, [run_id], 30)[str(run_id)] == "completed"
    assert reclaimed.detail["reason"] == "worker died"
    assert reclaimed.worker == victim.name and reclaimed.attempt == 1
    restarted = run_events(conn, run_id, "step_started")[1]
    assert (restarted.step_id, restarted.attempt, restarted.worker) == (started.step_id, 2, survivor.name)
    long_step = store.run_get(conn, str(run_id)).steps[0]
    assert long_step.attempt == 2 and long_step.reclaims == 1
    with capsys.disabled():
        print(f"\n  kill -9 -> step_reclaimed {seconds_since(killed_at, reclaimed):.3f}s, "
              f"-> restarted on {survivor.name} {seconds_since(killed_at, restarted):.3f}s")
    assert_invariants(conn, [run_id])


def test_mid_step_kill_with_no_attempts_left_dead_letters_the_step(conn, settings, spawn):
    procs = [spawn("w1", 1), spawn("w2", 1)]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, make_run(
        step("tool_call.fragile", tool="sleep", seconds=30, max_attempts=1),
        step("tool_call.after", ["tool_call.fragile"], tool="fetch_data"),
    ), settings)

    started = wait_event(conn, run_id, "step_started")
    kill_and_time(by_name(procs, started.worker))

    assert wait_terminal(conn, [run_id], 30)[str(run_id)] == "failed"
    fragile, after = store.run_get(conn, str(run_id)).steps
    assert fragile.status == "dead_letter" and fragile.attempt == 1
    assert "worker crashed 1 times" in fragile.error
    assert after.status == "pending"
    assert [e.type for e in run_events(conn, run_id) if e.step_id == fragile.id] == [
        "step_ready", "step_started", "step_reclaimed", "step_dead_lettered"]
    assert_invariants(conn, [run_id])
