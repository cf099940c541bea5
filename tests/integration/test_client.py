"""`durable_agent.Client` against a real database and real workers: submit (a Workflow or JSON,
with idempotency), get, events, wait (woken by NOTIFY, with a timeout), watch, cancel, redrive."""
from __future__ import annotations

import threading

import pytest

from durable_agent import Client, Conflict, InvalidRun, NotFound, RunStatus, Workflow
from tests.chaos.support import assert_invariants
from tests.helpers import make_run, step


@pytest.fixture
def client(db_url: str):  # noqa: ANN201 - a Client
    with Client(db_url) as opened:
        yield opened


def test_submit_a_workflow_wait_and_read_its_events(client, conn, spawn):
    wf = Workflow("client test")
    fetch = wf.step("tool_call.fetch", tool="fetch_data", input={"query": "queues"})
    wf.step("llm_call.sum", after=[fetch], prompt="Sum up")
    run_id = client.submit(wf, idempotency_key="client-1")
    assert client.submit(wf, idempotency_key="client-1") == run_id
    with pytest.raises(Conflict):
        client.submit(make_run(step("tool_call.x", tool="fetch_data")), idempotency_key="client-1")
    with pytest.raises(TimeoutError, match="still running"):
        client.wait(run_id, timeout=0.2)  # no worker yet

    spawn("w1")
    run = client.wait(run_id, timeout=30)
    assert run.status == RunStatus.COMPLETED and run.steps[1].output["summary"]
    events = client.events(run_id)
    assert events[0].type == "run_created" and events[-1].type == "run_completed"
    assert [e.id for e in client.events(run_id, after=events[2].id)] == [e.id for e in events[3:]]
    assert [e.id for e in client.watch(run_id)] == [e.id for e in events]  # a finished run: history, then the end
    assert str(client.get(run_id).id) == run_id
    assert_invariants(conn, [run_id])


def test_wait_and_watch_follow_a_live_run_to_its_end(client, conn, spawn):
    spawn("w1")
    run_id = client.submit(make_run(step("tool_call.s", tool="sleep", seconds=0.3),
                                    step("tool_call.f", ["tool_call.s"], tool="fetch_data")))
    waited: list[str] = []
    waiter = threading.Thread(target=lambda: waited.append(client.wait(run_id, timeout=30).status))
    waiter.start()
    with Client(client.settings.database_url) as watcher:
        watched = [e.type for e in watcher.watch(run_id)]
    waiter.join(30)
    assert watched[0] == "run_created" and watched[-1] == "run_completed" and watched.count("step_succeeded") == 2
    assert waited == ["completed"]
    assert_invariants(conn, [run_id])


def test_cancel_redrive_and_errors(client, conn, spawn):
    with pytest.raises(InvalidRun, match="unknown tool 'nope'"):
        client.submit(make_run(step("tool_call.x", tool="nope")))
    with pytest.raises(NotFound):
        client.get("not-a-run")
    long_run = client.submit(make_run(step("tool_call.s", tool="sleep", seconds=60)))
    assert client.cancel(long_run) == 1
    with pytest.raises(Conflict):
        client.cancel(long_run)

    spawn("w1")
    doomed = client.submit(make_run(step("tool_call.d", tool="fetch_data", failTimes=1, max_attempts=1)))
    assert client.wait(doomed, timeout=30).status == RunStatus.FAILED
    step_id = client.get(doomed).steps[0].id
    assert client.redrive(step_id) == doomed
    assert client.wait(doomed, timeout=30).status == RunStatus.COMPLETED
    redriven = [e for e in client.events(doomed) if e.type == "step_redriven"]
    assert redriven[0].worker == "client"
    assert_invariants(conn, [long_run, doomed])
