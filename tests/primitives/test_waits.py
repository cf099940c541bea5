"""Human-in-the-loop waits: a wait holds no slot while it waits, a signal resolves it exactly once
and flows to its children, a rejection or a timeout ends it as the step says."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine import store
from engine.errors import Conflict
from engine.model import Step
from engine.store import connect
from engine.submit import submit_run
from engine.verify import verify_all, verify_run
from tests.chaos.support import run_events, wait_event
from tests.helpers import ROOT, chain, make_run, step, wait_for


def approval_run(timeout: float | None = None, on_timeout: str = "fail", **extra: object) -> dict:
    wait_input: dict = {"prompt": "Send the summary?", "onTimeout": on_timeout, **extra}
    if timeout is not None:
        wait_input["timeoutSeconds"] = timeout
    return make_run(step("tool_call.draft", tool="fetch_data", count=2),
                    {"name": "wait.approve", "input": wait_input, "dependsOn": ["tool_call.draft"]},
                    step("tool_call.send", ["wait.approve"], tool="notify"), goal="needs approval")


def step_of(conn, run_id, name: str) -> Step:
    return next(s for s in store.run_get(conn, run_id).steps if s.name == name)


def wait_status(conn, run_id, name: str, status: str, timeout: float = 30) -> Step:
    return wait_for(lambda: (s := step_of(conn, run_id, name)).status == status and s, timeout,
                    f"{name} to be {status}", interval=0.05)


def test_two_hundred_waiting_runs_do_not_stop_another_run(conn, settings, spawn):
    waiting = [submit_run(conn, approval_run(), settings)[0] for _ in range(200)]
    spawn("w1", concurrency=4), spawn("w2", concurrency=4)
    wait_for(lambda: sum(s == "waiting" for s in _statuses(conn, "wait.approve")) == 200, 60,
             "200 waits to be waiting", interval=0.2)
    other, _ = submit_run(conn, chain(4), settings)
    wait_for(lambda: store.run_get(conn, other).status == "completed", 30, "the other run to complete")
    assert sum(s == "waiting" for s in _statuses(conn, "wait.approve")) == 200
    # A signal still lets one of them go on to completion.
    store.step_signal(conn, waiting[0], "wait.approve", {"approved": True}, sender="test")
    wait_for(lambda: store.run_get(conn, waiting[0]).status == "completed", 30, "the approved run to complete")
    assert verify_all(conn) == {}


def _statuses(conn, name: str) -> list[str]:
    rows = conn.execute("SELECT status FROM steps WHERE name = %s", (name,)).fetchall()
    return [r["status"] for r in rows]


def test_signal_payload_becomes_the_output_and_flows_to_the_child(conn, settings, spawn):
    run_id, _ = submit_run(conn, approval_run(), settings)
    spawn("w1")
    wait_status(conn, run_id, "wait.approve", "waiting")
    outcome = store.step_signal(conn, run_id, "wait.approve", {"approved": True, "comment": "ship it"}, "10.0.0.7")
    assert outcome.status == "succeeded"
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "the run to complete")
    assert step_of(conn, run_id, "wait.approve").output == {"approved": True, "comment": "ship it"}
    signalled = run_events(conn, run_id, "step_signalled")
    # The public event shows the sender's network only; the signals table keeps the address.
    assert len(signalled) == 1 and signalled[0].worker == "10.0.0.x" and signalled[0].detail["sender"] == "10.0.0.x"
    with pytest.raises(Conflict, match="already resolved"):
        store.step_signal(conn, run_id, "wait.approve", {"approved": False}, "10.0.0.8")
    audit = store.signals_for_run(conn, run_id)
    assert [(s.sender, s.accepted) for s in audit] == [("10.0.0.7", True), ("10.0.0.8", False)]
    assert verify_run(conn, str(run_id)) == []


def test_twenty_concurrent_signals_resolve_the_wait_exactly_once(conn, settings, db_url, spawn):
    run_id, _ = submit_run(conn, approval_run(), settings)
    spawn("w1")
    wait_status(conn, run_id, "wait.approve", "waiting")

    def send(i: int) -> str:
        with connect(db_url) as own:
            try:
                store.step_signal(own, run_id, "wait.approve", {"approved": True, "by": i}, f"client-{i}")
                return "accepted"
            except Conflict:
                return "refused"
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(send, range(20)))
    assert outcomes.count("accepted") == 1 and outcomes.count("refused") == 19
    assert len(run_events(conn, run_id, "step_signalled")) == 1
    assert len(run_events(conn, run_id, "step_signal_refused")) == 19
    assert len(store.signals_for_run(conn, run_id)) == 20
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "the run to complete")
    assert verify_run(conn, str(run_id)) == []


def test_rejection_dead_letters_the_wait_and_fails_the_run(conn, settings, spawn):
    run_id, _ = submit_run(conn, approval_run(), settings)
    spawn("w1")
    wait_status(conn, run_id, "wait.approve", "waiting")
    outcome = store.step_signal(conn, run_id, "wait.approve", {"approved": False, "comment": "too vague"}, "reviewer")
    assert outcome.status == "dead_letter"
    run = wait_for(lambda: (r := store.run_get(conn, run_id)).terminal and r, 30, "the run to end")
    assert run.status == "failed"
    wait_step = step_of(conn, run_id, "wait.approve")
    assert wait_step.error == "rejected by reviewer: too vague"
    assert step_of(conn, run_id, "tool_call.send").status == "pending"  # never sent
    with pytest.raises(Conflict, match="re-run from it"):
        store.step_redrive(conn, wait_step.id)
    assert verify_run(conn, str(run_id)) == []


@pytest.mark.parametrize(("on_timeout", "run_status", "wait_status_after"),
                         [("continue", "completed", "succeeded"), ("fail", "failed", "dead_letter")])
def test_timeout_follows_on_timeout(conn, settings, spawn, on_timeout, run_status, wait_status_after):
    run_id, _ = submit_run(conn, approval_run(timeout=1, on_timeout=on_timeout), settings)
    spawn("w1")
    event = wait_event(conn, run_id, "step_timed_out", 30)
    assert event.detail == {"onTimeout": on_timeout, "status": wait_status_after}
    run = wait_for(lambda: (r := store.run_get(conn, run_id)).terminal and r, 30, "the run to end")
    assert run.status == run_status
    if on_timeout == "continue":
        assert step_of(conn, run_id, "wait.approve").output == {"timedOut": True}
    assert verify_run(conn, str(run_id)) == []


def test_cli_signal_resolves_a_wait_and_refuses_a_second(conn, settings, db_url, spawn):
    run_id, _ = submit_run(conn, approval_run(), settings)
    spawn("w1")
    wait_status(conn, run_id, "wait.approve", "waiting")
    env = {"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "engine", "signal", str(run_id), "wait.approve", "--data", '{"approved": true}']
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert '"status": "succeeded"' in first.stdout
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "already resolved" in second.stderr
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "the run to complete")
    assert verify_run(conn, str(run_id)) == []
