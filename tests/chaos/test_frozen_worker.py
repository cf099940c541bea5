"""A worker frozen with SIGSTOP still holds its liveness lock (its connection is alive), so only its
lease running out can give its step to another worker; when it thaws, fencing discards its result."""
from __future__ import annotations

import signal

import pytest

from engine import store
from engine.store.notifications import notifications_for_run
from engine.submit import submit_run
from tests.chaos.support import assert_invariants, by_name, wait_event, wait_registered, wait_terminal, worker_events
from tests.helpers import make_run, step

pytestmark = pytest.mark.chaos

SHORT_LEASE = {"LEASE_SECONDS": "1.5", "HEARTBEAT_SECONDS": "0.3"}


def test_frozen_worker_loses_its_step_at_lease_expiry_and_its_late_result_is_discarded(conn, settings, spawn):
    procs = [spawn("w1", 1, **SHORT_LEASE), spawn("w2", 1, **SHORT_LEASE)]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, make_run(
        step("tool_call.announce", tool="notify", message="report ready", sleepSeconds=2.5)), settings)

    started = wait_event(conn, run_id, "step_started")
    frozen = by_name(procs, started.worker)
    other = next(p for p in procs if p is not frozen)
    frozen.signal(signal.SIGSTOP)
    try:
        reclaimed = wait_event(conn, run_id, "step_reclaimed", timeout=20)
        succeeded = wait_event(conn, run_id, "step_succeeded", timeout=20)
    finally:
        frozen.signal(signal.SIGCONT)
    discarded = wait_event(conn, run_id, "step_result_discarded", timeout=20)

    assert reclaimed.detail["reason"] == "lease expired"
    assert (reclaimed.worker, reclaimed.attempt) == (frozen.name, 1)
    assert (succeeded.worker, succeeded.attempt) == (other.name, 2)
    assert (discarded.worker, discarded.attempt) == (frozen.name, 1)
    assert discarded.detail["currentStatus"] == "succeeded" and discarded.detail["currentAttempt"] == 2
    assert not worker_events(conn, "worker_lost"), "a frozen worker is alive: only its lease may expire"
    assert wait_terminal(conn, [run_id], 10)[str(run_id)] == "completed"

    announce = store.run_get(conn, str(run_id)).steps[0]
    assert announce.attempt == 2
    assert announce.output["duplicate"] is False, "the recorded output is the other worker's"
    sent = notifications_for_run(conn, run_id)
    assert [(n["message"], n["attempt"]) for n in sent] == [("report ready", 2)]
    assert frozen.alive(), "the thawed worker carries on"
    assert_invariants(conn, [run_id])


def test_thawed_worker_whose_heartbeat_is_fenced_stops_working_on_the_step(conn, settings, spawn):
    procs = [spawn("w1", 1, **SHORT_LEASE), spawn("w2", 1, **SHORT_LEASE)]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, make_run(step("tool_call.slow", tool="sleep", seconds=60)), settings)

    started = wait_event(conn, run_id, "step_started")
    frozen = by_name(procs, started.worker)
    frozen.signal(signal.SIGSTOP)
    try:
        wait_event(conn, run_id, "step_started", timeout=20, where=lambda e: e.attempt == 2)
    finally:
        frozen.signal(signal.SIGCONT)
    # Its handler would sleep for a minute more: only the fenced heartbeat can end it this soon.
    discarded = wait_event(conn, run_id, "step_result_discarded", timeout=20)
    assert (discarded.worker, discarded.attempt) == (frozen.name, 1)
    assert discarded.detail == {"outcome": "failed", "currentStatus": "running", "currentAttempt": 2}
    assert "lease lost for step(s)" in frozen.output()

    store.run_cancel(conn, run_id, by="test")
    assert wait_terminal(conn, [run_id], 10)[str(run_id)] == "cancelled"
    assert_invariants(conn, [run_id])
