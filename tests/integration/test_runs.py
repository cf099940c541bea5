"""Runs end to end against real Postgres and real worker processes: DAG order, data flow,
retries, dead letters, redrive, cancel."""
from __future__ import annotations

import threading

import pytest

from engine import store
from engine.errors import PermanentError
from engine.model import Event, Run, RunStatus
from engine.store.tools import tools_offer
from engine.submit import submit_run
from engine.tools import StepContext
from engine.tools.builtin import TOOLS
from engine.tools.registry import ToolDefaults
from engine.verify import verify_run
from tests.helpers import chain, make_run, step, wait_for
from worker.worker import Worker


def run_status(conn, run_id) -> RunStatus:
    return store.run_get(conn, run_id).status


def wait_terminal(conn, run_id, timeout: float = 60) -> Run:
    return wait_for(lambda: (r := store.run_get(conn, run_id)).status != "running" and r, timeout,
                    f"run {run_id} to finish")


def events_of(conn, run_id) -> list[Event]:
    return store.events_after(conn, run_id)


def test_chain_runs_each_step_after_its_parent(conn, settings, spawn):
    run_id, _ = submit_run(conn, chain(6), settings)
    spawn("w1"), spawn("w2")
    run = wait_terminal(conn, run_id)
    assert run.status == "completed"
    started = [e.step for e in events_of(conn, run_id) if e.type == "step_started"]
    assert started == [f"tool_call.s{i}" for i in range(6)]
    assert verify_run(conn, str(run_id)) == []


def test_fan_out_fan_in_passes_parent_outputs_to_children(conn, settings, spawn):
    branches = [step(f"tool_call.fetch{i}", tool="fetch_data", query=f"topic {i}", count=3) for i in range(4)]
    merge = step("tool_call.merge", [b["name"] for b in branches], tool="transform")
    summary = step("llm_call.summarize", ["tool_call.merge"], prompt="Summarize the sources")
    run_id, _ = submit_run(conn, make_run(*branches, merge, summary), settings)
    spawn("w1"), spawn("w2")
    run = wait_terminal(conn, run_id)
    assert run.status == "completed"
    by_name = {s.name: s for s in run.steps}
    assert by_name["tool_call.merge"].output["count"] == 12
    assert by_name["tool_call.merge"].output["sources"] == sorted(b["name"] for b in branches)
    assert "12 item(s)" in by_name["llm_call.summarize"].output["summary"]
    assert verify_run(conn, str(run_id)) == []


def test_fifty_step_dag_completes_in_dependency_order(conn, settings, spawn):
    steps = []
    for i in range(50):  # each step depends on up to three earlier ones: a wide, deep DAG
        parents = [f"tool_call.n{j}" for j in (i - 1, i // 2, i // 3) if 0 <= j < i]
        steps.append(step(f"tool_call.n{i}", sorted(set(parents)), tool="fetch_data", count=1))
    run_id, _ = submit_run(conn, make_run(*steps), settings)
    spawn("w1", concurrency=8), spawn("w2", concurrency=8)
    assert wait_terminal(conn, run_id).status == "completed"
    assert verify_run(conn, str(run_id)) == []  # includes "no step started before its parents succeeded"


def test_fail_times_two_succeeds_on_attempt_three(conn, settings, spawn):
    run_id, _ = submit_run(conn, make_run(step("tool_call.flaky", tool="fetch_data", failTimes=2)), settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    assert run.status == "completed"
    assert run.steps[0].attempt == 3
    kinds = [e.type for e in events_of(conn, run_id)]
    assert kinds.count("step_retry_scheduled") == 2
    assert kinds.count("step_succeeded") == 1
    assert verify_run(conn, str(run_id)) == []


def test_exhausted_attempts_dead_letter_and_fail_the_run_after_independent_branch(conn, settings, spawn):
    body = make_run(
        step("tool_call.doomed", tool="fetch_data", failTimes=99, max_attempts=2),
        step("tool_call.after_doomed", ["tool_call.doomed"], tool="transform"),
        step("tool_call.independent", tool="sleep", seconds=0.5),
        step("tool_call.independent_child", ["tool_call.independent"], tool="transform"),
    )
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    statuses = {s.name: s.status for s in run.steps}
    assert run.status == "failed"
    assert statuses == {"tool_call.doomed": "dead_letter", "tool_call.after_doomed": "pending",
                        "tool_call.independent": "succeeded", "tool_call.independent_child": "succeeded"}
    doomed = next(s for s in run.steps if s.name == "tool_call.doomed")
    assert doomed.attempt == 2 and "injected failure" in doomed.error
    assert verify_run(conn, str(run_id)) == []


def test_a_step_out_of_attempts_dead_letters_after_its_last_attempt(conn, settings, spawn):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data", failTimes=1, max_attempts=1)),
                           settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    assert run.status == "failed" and run.steps[0].attempt == 1
    assert run.steps[0].status == "dead_letter" and "injected failure" in run.steps[0].error
    assert verify_run(conn, str(run_id)) == []


def test_a_handler_raising_permanent_error_dead_letters_on_attempt_one_with_attempts_left(conn, settings,
                                                                                          monkeypatch):
    calls: list[int] = []

    def refuse(ctx: StepContext) -> dict:
        calls.append(ctx.attempt)
        raise PermanentError("this input can never work")

    # A handler of our own needs the worker in this process: it runs on real Postgres, with its
    # real claim loop, slots, recorder and reaper threads.
    monkeypatch.setitem(TOOLS, "refuse", refuse)
    tools_offer(conn, {"refuse": ToolDefaults()})  # submission accepts a tool a worker has offered
    body = make_run(step("tool_call.bad", tool="refuse", max_attempts=5),
                    step("tool_call.after_bad", ["tool_call.bad"], tool="transform"),
                    step("tool_call.independent", tool="fetch_data"))
    run_id, _ = submit_run(conn, body, settings)
    worker = Worker(settings, "w-in-process", concurrency=2)
    claim_loop = threading.Thread(target=worker.run_forever, daemon=True)
    claim_loop.start()
    try:
        run = wait_terminal(conn, run_id)
    finally:
        worker.stopping.set()
        worker.wake.set()
        claim_loop.join(30)
    steps = {s.name: s for s in run.steps}
    assert run.status == "failed" and calls == [1]
    bad = steps["tool_call.bad"]
    assert bad.status == "dead_letter" and bad.attempt == 1 and bad.max_attempts == 5
    assert bad.error == "permanent: this input can never work"
    assert steps["tool_call.after_bad"].status == "pending"
    assert steps["tool_call.independent"].status == "succeeded"
    assert not any(e.type == "step_retry_scheduled" for e in events_of(conn, run_id))
    assert verify_run(conn, str(run_id)) == []


def test_redrive_resumes_from_the_failed_step_without_rerunning_successes(conn, settings, spawn):
    body = make_run(
        step("tool_call.first", tool="fetch_data"),
        step("tool_call.flaky", ["tool_call.first"], tool="transform", failTimes=2, max_attempts=2),
        step("tool_call.last", ["tool_call.flaky"], tool="transform"),
    )
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    assert run.status == "failed"
    flaky = next(s for s in run.steps if s.name == "tool_call.flaky")
    assert flaky.status == "dead_letter" and flaky.attempt == 2
    store.step_redrive(conn, flaky.id, by="test")
    run = wait_terminal(conn, run_id)
    assert run.status == "completed"
    events = events_of(conn, run_id)
    starts = [e.step for e in events if e.type == "step_started"]
    assert starts.count("tool_call.first") == 1  # the succeeded parent was not run again
    assert starts.count("tool_call.flaky") == 3  # attempt numbers keep growing: 1, 2, then 3 after redrive
    assert any(e.type == "step_redriven" and e.detail["runReopened"] for e in events)
    assert verify_run(conn, str(run_id)) == []


def test_redrive_refuses_a_step_that_is_not_dead_lettered(conn, settings):
    from engine.errors import Conflict, NotFound
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    step_id = store.run_get(conn, run_id).steps[0].id
    with pytest.raises(Conflict, match="only a dead-lettered step"):
        store.step_redrive(conn, step_id)
    with pytest.raises(NotFound):
        store.step_redrive(conn, 987654321)


def test_cancel_stops_a_run_and_discards_the_running_steps_result(conn, settings, spawn):
    body = make_run(step("tool_call.slow", tool="sleep", seconds=30),
                    step("tool_call.next", ["tool_call.slow"], tool="transform"))
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    wait_for(lambda: store.run_get(conn, run_id).steps[0].status == "running", 20, "slow step running")
    assert store.run_cancel(conn, run_id, by="test") == 2
    assert {s.status for s in store.run_get(conn, run_id).steps} == {"cancelled"}
    # The worker's heartbeat is fenced: it stops sleeping, and its result is discarded.
    wait_for(lambda: any(e.type == "step_result_discarded" for e in events_of(conn, run_id)), 20,
             "the cancelled attempt's result to be discarded")
    run = store.run_get(conn, run_id)
    assert run.status == "cancelled" and run.steps[0].output is None
    assert verify_run(conn, str(run_id)) == []
    from engine.errors import Conflict
    with pytest.raises(Conflict, match="already cancelled"):
        store.run_cancel(conn, run_id)
