"""A step that kills its worker every time (a poison pill) uses up its attempts through crashes and
is dead-lettered, while the workers are restarted and other runs keep going."""
from __future__ import annotations

import pytest

from engine import store
from engine.submit import submit_run
from tests.chaos.support import Supervisor, assert_invariants, run_events, wait_registered, wait_terminal
from tests.helpers import make_run, step, wait_for

pytestmark = pytest.mark.chaos


def test_poison_pill_is_dead_lettered_after_its_attempts_while_a_run_beside_it_completes(conn, settings, spawn):
    procs = [spawn("w1", 2), spawn("w2", 2)]
    wait_registered(conn, *procs)
    with Supervisor(procs) as supervisor:
        poison_id, _ = submit_run(conn, make_run(
            step("tool_call.poison", tool="fetch_data", crash=True, max_attempts=3),
            step("tool_call.never", ["tool_call.poison"], tool="notify"),
            goal="poison pill"), settings)
        beside_id, _ = submit_run(conn, make_run(
            *[step(f"tool_call.fetch{i}", tool="fetch_data", sleepSeconds=0.3) for i in range(4)],
            step("tool_call.merge", [f"tool_call.fetch{i}" for i in range(4)], tool="transform"),
            step("tool_call.notify", ["tool_call.merge"], tool="notify"),
            goal="beside the poison pill"), settings)
        statuses = wait_terminal(conn, [poison_id, beside_id], 60)
        wait_for(lambda: sum(supervisor.restarts.values()) == 3, 10, "a restart for each of the 3 crashes")
        wait_registered(conn, *procs)

    assert statuses == {str(poison_id): "failed", str(beside_id): "completed"}
    poison = store.run_get(conn, str(poison_id)).steps[0]
    assert (poison.status, poison.attempt, poison.reclaims) == ("dead_letter", 3, 3)
    assert "worker crashed 3 times" in poison.error
    reclaims = run_events(conn, poison_id, "step_reclaimed")
    assert [e.attempt for e in reclaims] == [1, 2, 3]
    assert all(e.detail["reason"] == "worker died" for e in reclaims)
    assert_invariants(conn, [poison_id, beside_id])
