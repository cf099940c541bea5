"""The agent primitives with issue 12's provider limits and budgets: a map step's children take its
limit key (each child is one provider request) while the map step itself is claimed unlimited; a run
failed for its budget closes its waits like its other unfinished steps; a wait takes no limit key;
a re-run carries its source's budget and limit keys."""
from __future__ import annotations

import json

import pytest

from engine import store
from engine.dag import parse_run
from engine.errors import Conflict, InvalidRun
from engine.model import RunStatus, StepStatus
from engine.rerun import rerun_run
from engine.store.waits import step_signal
from engine.submit import submit_run
from engine.tools import tool_names
from engine.verify import verify_run
from tests.chaos.support import run_events, wait_terminal
from tests.helpers import make_run, step, wait_for


def _step_rows(conn, run_id) -> dict[str, dict]:
    rows = conn.execute("SELECT name, status, limit_key, limit_held FROM steps WHERE run_id = %s", (run_id,)).fetchall()
    return {r["name"]: r for r in rows}


def test_map_children_take_the_limit_key_and_run_within_the_limit(conn, settings, spawn):
    body = make_run(step("tool_call.plan", tool="plan", topic="limits", count=4),
                    {**step("llm_call.each", prompt="Summarize the item"), "map": "tool_call.plan"},
                    goal="a limited map")
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1", 4, LLM_LIMITS=json.dumps({"llm": {"concurrency": 1}}))
    assert wait_terminal(conn, [run_id], 90)[str(run_id)] == RunStatus.COMPLETED
    rows = _step_rows(conn, run_id)
    children = [r for name, r in rows.items() if name.startswith("llm_call.each[")]
    assert len(children) == 4
    assert {(r["limit_key"], r["limit_held"]) for r in children} == {("llm:offline", "llm")}
    assert rows["llm_call.each"]["limit_key"] is None, "the collector calls no provider"
    # Admitted by the limited claim (which names the key), one at a time under concurrency 1.
    starts = [e for e in run_events(conn, run_id) if e.type in ("step_started", "step_succeeded")
              and e.step.startswith("llm_call.each[")]
    assert all((e.detail or {}).get("limitKey") == "llm" for e in starts if e.type == "step_started")
    running = 0
    for event in starts:
        running += 1 if event.type == "step_started" else -1
        assert running <= 1, "the map's children went over the limit's concurrency"
    collector = [e for e in run_events(conn, run_id, "step_started") if e.step == "llm_call.each"]
    assert collector and all(not (e.detail or {}).get("limitKey") for e in collector)
    assert verify_run(conn, str(run_id)) == []


def test_a_run_failed_for_its_budget_closes_its_waits_and_a_rerun_keeps_the_budget(conn, settings, spawn):
    body = make_run(step("tool_call.fetch", tool="fetch_data", count=10),
                    step("llm_call.first", ["tool_call.fetch"], prompt="Summarize"),
                    step("llm_call.second", ["llm_call.first"], prompt="Summarize again"),
                    {"name": "wait.approve", "input": {"prompt": "Go on?"}}, goal="budgeted approval")
    body["budget"] = {"tokens": 150}
    run_id, _ = submit_run(conn, body, settings)
    wait_for(lambda: _step_rows(conn, run_id)["wait.approve"]["status"] == StepStatus.WAITING, 30, "the wait to start")
    spawn("w1", 4)
    assert wait_terminal(conn, [run_id], 60)[str(run_id)] == RunStatus.FAILED
    rows = _step_rows(conn, run_id)
    assert rows["wait.approve"]["status"] == StepStatus.CANCELLED
    assert rows["llm_call.second"]["status"] == StepStatus.CANCELLED
    assert store.run_get(conn, str(run_id)).end_reason == "budget_exceeded"
    with pytest.raises(Conflict):
        step_signal(conn, run_id, "wait.approve", {"approved": True}, "test")
    assert verify_run(conn, str(run_id)) == []

    rerun_id = rerun_run(conn, run_id, "llm_call.second", None, settings)
    budget = conn.execute("SELECT tokens, usd FROM run_budgets WHERE run_id = %s", (rerun_id,)).fetchone()
    assert (budget["tokens"], budget["usd"]) == (150, None)
    assert _step_rows(conn, rerun_id)["llm_call.second"]["limit_key"] == "llm:offline"
    store.run_cancel(conn, rerun_id)
    assert verify_run(conn, str(rerun_id)) == []


def test_a_wait_step_takes_no_limit_key(settings):
    body = make_run(step("llm_call.draft", prompt="Draft"),
                    {"name": "wait.approve", "dependsOn": ["llm_call.draft"], "limitKey": "llm", "input": {}})
    with pytest.raises(InvalidRun, match="limitKey"):
        parse_run(body, settings, tool_names())
