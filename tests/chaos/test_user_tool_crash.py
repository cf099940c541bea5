"""Crash guarantees hold for users' tools: a worker SIGKILLed in the middle of a user tool's step is
detected, the step is reclaimed and re-run on a worker that offers the tool, the dead attempt's
writes are fenced off, and `engine verify` finds every invariant intact."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import store
from engine.submit import submit_run
from tests.chaos.support import (
    assert_invariants,
    kill_and_time,
    run_events,
    victim_and_survivor,
    wait_event,
    wait_registered,
    wait_terminal,
)
from tests.helpers import ROOT, make_run, step, wait_for

pytestmark = pytest.mark.chaos

SLOW_TOOL = '''
"""A user tool that is slow on its first attempt and logs as it goes."""
from durable_agent import StepContext, tool


@tool("slow_upper", max_attempts=3)
def slow_upper(ctx: StepContext) -> dict:
    ctx.log.info("attempt %d started", ctx.attempt)
    if ctx.attempt == 1:
        ctx.sleep(30)  # the test kills the worker here
        ctx.log.info("attempt 1 finished sleeping")  # never written: the worker is dead
    return {"text": str(ctx.input["text"]).upper(), "attempt": ctx.attempt}
'''


def test_kill_mid_user_tool_step_reclaims_fences_and_verifies(conn, db_url, settings, spawn, tmp_path: Path):
    (tmp_path / "crash_tools.py").write_text(SLOW_TOOL)
    env = {"TOOL_MODULES": "crash_tools", "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [spawn("u1", 1, **env), spawn("u2", 1, **env), spawn("plain", 1)]  # "plain" lacks the tool
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, make_run(step("tool_call.up", tool="slow_upper", text="durable"),
                                          step("llm_call.say", ["tool_call.up"])), settings)

    started = wait_event(conn, run_id, "step_started", where=lambda e: e.step == "tool_call.up")
    wait_event(conn, run_id, "step_log", where=lambda e: e.detail["message"] == "attempt 1 started")
    victim, survivor = victim_and_survivor(procs[:2], started)  # never "plain": it lacks the tool
    kill_and_time(victim)
    reclaimed = wait_event(conn, run_id, "step_reclaimed")

    assert wait_terminal(conn, [run_id], 30)[str(run_id)] == "completed"
    assert reclaimed.worker == victim.name and reclaimed.detail["reason"] == "worker died"
    up_starts = [e for e in run_events(conn, run_id, "step_started") if e.step == "tool_call.up"]
    assert [(e.attempt, e.worker) for e in up_starts] == [(1, victim.name), (2, survivor.name)]
    up = store.run_get(conn, str(run_id)).steps[0]
    assert up.output == {"text": "DURABLE", "attempt": 2} and up.reclaims == 1
    messages = [(e.attempt, e.detail["message"]) for e in run_events(conn, run_id, "step_log")]
    assert messages == [(1, "attempt 1 started"), (2, "attempt 2 started")]
    assert_invariants(conn, [run_id])
    verified = subprocess.run([sys.executable, "-m", "engine", "verify"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "DATABASE_URL": db_url}, timeout=60)
    assert verified.returncode == 0 and "every invariant holds" in verified.stdout, verified.stdout + verified.stderr


def test_a_zombie_attempts_log_lines_are_fenced_off(conn, settings):
    """The fencing of `step_log`: once the attempt is no longer the step's, its lines are dropped."""
    from engine.store.steplog import step_log

    run_id, _ = submit_run(conn, make_run(step("tool_call.f", tool="fetch_data")), settings)
    claimed = wait_for(lambda: store.step_claim(conn, "zombie", 0, 1, 300), 5, "a claim")[0]
    assert step_log(conn, claimed.id, claimed.run_id, claimed.attempt, "zombie", "info", "while I hold it")
    store.run_cancel(conn, run_id, by="test")
    assert not step_log(conn, claimed.id, claimed.run_id, claimed.attempt, "zombie", "info", "after cancel")
    assert [e.detail["message"] for e in run_events(conn, run_id, "step_log")] == ["while I hold it"]
    assert_invariants(conn, [run_id])
