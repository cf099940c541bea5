"""Dynamic fan-out (map): children created with the source's success, exactly once, even when a
worker is killed while they run; outputs collected in item order; bad sources dead-lettered."""
from __future__ import annotations

import signal

from engine import store
from engine.model import Run, RunStatus, StepStatus
from engine.submit import submit_run
from engine.verify import verify_all, verify_run
from tests.chaos.support import run_events, wait_event
from tests.helpers import make_run, step, wait_for


def wait_terminal(conn, run_id, timeout: float = 90) -> Run:
    return wait_for(lambda: (r := store.run_get(conn, run_id)).terminal and r, timeout,
                    f"run {run_id} to finish", interval=0.1)


def map_step(name: str, source: str, max_items: int | None = None, **input_: object) -> dict:
    body = step(name, **input_)
    body["map"] = source
    if max_items is not None:
        body["maxItems"] = max_items
    return body


def test_thirty_items_survive_kill_9_and_reach_the_downstream_step_in_order(conn, settings, spawn):
    body = make_run(
        step("tool_call.plan", tool="plan", topic="durable queues", count=30),
        map_step("tool_call.fetch", "tool_call.plan", tool="fetch_data", count=2, sleepSeconds=0.3),
        step("tool_call.merge", ["tool_call.fetch"], tool="transform"),
    )
    run_id, _ = submit_run(conn, body, settings)
    w1, _w2 = spawn("w1", concurrency=4), spawn("w2", concurrency=4)
    started = wait_event(conn, run_id, "step_started", 60, where=lambda e: (e.step or "").startswith("tool_call.fetch["))
    victim = w1 if started.worker == "w1" else _w2
    victim.signal(signal.SIGKILL)
    victim.wait_exit(10)
    spawn("w3", concurrency=4)
    run = wait_terminal(conn, run_id)
    assert run.status == RunStatus.COMPLETED
    children = [s for s in run.steps if s.name.startswith("tool_call.fetch[")]
    assert sorted(s.name for s in children) == sorted(f"tool_call.fetch[{i}]" for i in range(30))
    successes = [e.step for e in run_events(conn, run_id, "step_succeeded")]
    assert all(successes.count(c.name) == 1 for c in children)
    assert len(run_events(conn, run_id, "steps_mapped")) == 1
    assert [e.step for e in run_events(conn, run_id, "step_reclaimed")], "the kill reclaimed a child"
    by_name = {s.name: s for s in run.steps}
    collected = by_name["tool_call.fetch"].output
    assert collected["count"] == 30
    queries = [child["source"] for child in collected["items"]]
    plan_items = by_name["tool_call.plan"].output["items"]
    assert queries == [item["query"] for item in plan_items]  # item order, not completion order
    assert by_name["tool_call.merge"].output["count"] == 60
    assert verify_all(conn) == {}


def test_source_output_without_a_list_dead_letters_the_source(conn, settings, spawn):
    body = make_run(step("tool_call.stats", tool="transform", op="stats"),
                    map_step("tool_call.each", "tool_call.stats", tool="fetch_data"))
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    source = next(s for s in run.steps if s.name == "tool_call.stats")
    assert run.status == RunStatus.FAILED and source.status == StepStatus.DEAD_LETTER
    assert 'needs a list in this step\'s output field "items"' in source.error
    assert source.attempt == 1  # permanent: not retried
    assert [s.name for s in run.steps] == ["tool_call.stats", "tool_call.each"]  # no child
    assert verify_run(conn, str(run_id)) == []


def test_more_items_than_max_items_is_refused(conn, settings, spawn):
    body = make_run(step("tool_call.plan", tool="plan", count=5),
                    map_step("tool_call.each", "tool_call.plan", max_items=3, tool="fetch_data"))
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    source = run.steps[0]
    assert source.status == StepStatus.DEAD_LETTER and "5 items, more than maxItems 3" in source.error
    assert len(run.steps) == 2
    assert verify_run(conn, str(run_id)) == []


def test_empty_list_succeeds_at_once_with_no_children(conn, settings, spawn):
    body = make_run(step("tool_call.plan", tool="plan", count=0),
                    map_step("tool_call.each", "tool_call.plan", tool="fetch_data"),
                    step("tool_call.after", ["tool_call.each"], tool="transform"))
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    run = wait_terminal(conn, run_id)
    assert run.status == RunStatus.COMPLETED
    assert {s.name: s.output for s in run.steps}["tool_call.each"] == {"items": [], "count": 0}
    assert len(run.steps) == 3
    assert verify_run(conn, str(run_id)) == []


def test_a_claimed_map_source_is_flagged_so_its_success_expands_the_map(conn, settings):
    body = make_run(step("tool_call.plan", tool="plan"), step("tool_call.other", tool="plan"),
                    map_step("tool_call.each", "tool_call.plan", tool="fetch_data"))
    submit_run(conn, body, settings)
    claimed = {s.name: s.feeds_map for s in store.step_claim(conn, "test", 0, 5, 30)}
    assert claimed == {"tool_call.plan": True, "tool_call.other": False}
