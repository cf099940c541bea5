"""Budgets: a run with `"budget": {"tokens": N}` (or `usd`) whose LLM steps use more is failed with
reason `budget_exceeded` before its next LLM step starts; the event names the budget and the spend."""
from __future__ import annotations

import pytest

from engine import store
from engine.errors import InvalidRun
from engine.store.streams import run_usage
from engine.submit import submit_run
from engine.verify import verify_run
from tests.chaos.support import run_events, wait_terminal
from tests.helpers import make_run, step


def llm_chain(budget: dict) -> dict:
    body = make_run(step("tool_call.fetch", tool="fetch_data", count=10),
                    step("llm_call.first", ["tool_call.fetch"], prompt="Summarize"),
                    step("llm_call.second", ["llm_call.first"], prompt="Summarize again"),
                    step("llm_call.third", ["llm_call.second"], prompt="And again"), goal="budgeted")
    body["budget"] = budget
    return body


@pytest.mark.parametrize("budget", [{"tokens": 150}, {"usd": 0.00001}])
def test_a_run_over_its_budget_fails_before_its_next_llm_step_starts(conn, settings, spawn, budget):
    run_id, _ = submit_run(conn, llm_chain(budget), settings)
    spawn("w1", 4)
    assert wait_terminal(conn, [run_id], 60)[str(run_id)] == "failed"
    [exceeded] = run_events(conn, run_id, "budget_exceeded")
    [failed] = run_events(conn, run_id, "run_failed")
    usage = run_usage(conn, run_id)
    assert exceeded.detail["reason"] == "budget_exceeded" and failed.detail == {"reason": "budget_exceeded"}
    assert exceeded.detail["budget"] == {"tokens": budget.get("tokens"), "usd": budget.get("usd")}
    assert exceeded.detail["spent"]["tokens"] == usage.total.tokens
    assert usage.budget_exceeded
    if "tokens" in budget:
        assert usage.total.tokens >= budget["tokens"]
    started = {e.step for e in run_events(conn, run_id, "step_started")}
    assert started == {"tool_call.fetch", "llm_call.first"}, "no LLM step started after the check failed"
    assert all(e.id < exceeded.id for e in run_events(conn, run_id, "step_started"))
    statuses = {s.name: s.status for s in store.run_get(conn, str(run_id)).steps}
    assert statuses == {"tool_call.fetch": "succeeded", "llm_call.first": "succeeded",
                        "llm_call.second": "cancelled", "llm_call.third": "cancelled"}
    assert verify_run(conn, str(run_id)) == []


def test_a_run_within_its_budget_completes(conn, settings, spawn):
    run_id, _ = submit_run(conn, llm_chain({"tokens": 100_000, "usd": 5}), settings)
    spawn("w1", 4)
    assert wait_terminal(conn, [run_id], 60)[str(run_id)] == "completed"
    assert run_events(conn, run_id, "budget_exceeded") == []
    assert verify_run(conn, str(run_id)) == []


@pytest.mark.parametrize("budget", [{}, {"tokens": 0}, {"usd": -1}, {"dollars": 3}, "100"])
def test_a_malformed_budget_is_refused(conn, settings, budget):
    with pytest.raises(InvalidRun):
        submit_run(conn, llm_chain(budget), settings)
