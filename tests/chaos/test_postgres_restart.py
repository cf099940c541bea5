"""Postgres crashes (`pg_ctl restart -m immediate`) with runs in flight: every connection and every
liveness lock is gone at once. Workers reconnect, re-take their locks within the restart grace, and
every run still reaches its correct end with nothing recorded twice."""
from __future__ import annotations

import pytest

from engine import store
from engine.store import connect
from engine.submit import submit_run
from tests.chaos.support import assert_invariants, wait_registered, wait_terminal, worker_events
from tests.helpers import chain, make_run, step, wait_for

pytestmark = pytest.mark.chaos

# Generous beside the workers' reconnect backoff (at most 2 s), so no live worker is taken for dead.
WORKER_ENV = {"RESTART_GRACE_SECONDS": "10"}


def _runs_to_submit() -> list[tuple[dict, str]]:
    """(run body, the status it must end in)."""
    fan = [step(f"tool_call.fetch{i}", tool="fetch_data", sleepSeconds=0.4) for i in range(6)]
    return [
        *[(chain(4, sleepSeconds=0.3), "completed") for _ in range(3)],
        (make_run(*fan, step("tool_call.merge", [s["name"] for s in fan], tool="transform"),
                  step("tool_call.tell", ["tool_call.merge"], tool="notify", sleepSeconds=0.3),
                  goal="fan-out, fan-in, notify"), "completed"),
        (make_run(step("tool_call.long", tool="sleep", seconds=4),
                  step("tool_call.after", ["tool_call.long"], tool="fetch_data"),
                  goal="heartbeats through the outage"), "completed"),
        (make_run(step("tool_call.flaky", tool="fetch_data", failTimes=2, sleepSeconds=0.2, max_attempts=6),
                  goal="recovers from two failures"), "completed"),
        (make_run(step("tool_call.doomed", tool="fetch_data", failTimes=9, sleepSeconds=0.2, max_attempts=2),
                  step("tool_call.beside", tool="sleep", seconds=0.5), goal="fails"), "failed"),
    ]


def test_postgres_crash_restart_with_runs_in_flight_loses_and_duplicates_nothing(pg, db_url, settings, spawn):
    procs = [spawn("w1", 3, **WORKER_ENV), spawn("w2", 3, **WORKER_ENV)]
    with connect(db_url) as conn:
        wait_registered(conn, *procs)
        expected = {str(submit_run(conn, body, settings)[0]): status for body, status in _runs_to_submit()}
        wait_for(lambda: _running_steps(conn, expected) >= 3, 20, "steps running on the workers")

    pg.restart(mode="immediate")

    with connect(db_url) as conn:
        statuses = wait_terminal(conn, expected, 60)
        assert statuses == expected
        assert all(p.alive() for p in procs), "workers ride out the outage"
        wait_registered(conn, *procs)
        assert not worker_events(conn, "worker_lost"), "a live worker was taken for dead after the restart"
        assert_invariants(conn, expected)
    assert any("connection lost" in p.output() for p in procs), "the outage was felt by the workers"


def _running_steps(conn: object, run_ids: dict[str, str]) -> int:
    return sum(s.status == "running" for r in run_ids for s in store.run_get(conn, r).steps)
