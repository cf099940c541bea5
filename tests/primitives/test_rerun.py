"""Re-run from a step: upstream outputs are copied (their handlers are never called again),
`fromStep` and everything downstream run afresh with the overridden input, the source is unchanged."""
from __future__ import annotations

import subprocess
import sys

import pytest

from engine import store
from engine.errors import Conflict, InvalidRun
from engine.model import Run
from engine.rerun import rerun_run
from engine.submit import submit_run
from engine.verify import verify_all
from tests.chaos.support import run_events
from tests.helpers import ROOT, make_run, step, wait_for


@pytest.fixture
def pipeline(tools) -> dict:
    tools.register("plan_t", lambda ctx: {"items": [{"query": f"q{i}"} for i in range(3)]})
    tools.register("fetch_t", lambda ctx: {"query": ctx.input["item"]["query"]})
    tools.register("summarize_t", lambda ctx: {"summary": f"{ctx.input.get('style', 'plain')}: " + ",".join(
        o["query"] for o in ctx.parents["tool_call.fetch"]["items"])})
    tools.register("send_t", lambda ctx: {"sent": ctx.parents["tool_call.summarize"]["summary"]})
    fetch = step("tool_call.fetch", tool="fetch_t")
    fetch["map"] = "tool_call.plan"
    return make_run(step("tool_call.plan", tool="plan_t"), fetch,
                    step("tool_call.summarize", ["tool_call.fetch"], tool="summarize_t"),
                    step("tool_call.send", ["tool_call.summarize"], tool="send_t"), goal="rerun me")


def finished(conn, run_id) -> Run:
    return wait_for(lambda: (r := store.run_get(conn, run_id)).terminal and r, 30, f"run {run_id} to end")


def outputs(run: Run) -> dict:
    return {s.name: s.output for s in run.steps}


def test_rerun_from_a_step_copies_upstream_and_runs_downstream_with_new_input(conn, settings, tools, pipeline,
                                                                             inprocess_worker):
    inprocess_worker()
    source_id, _ = submit_run(conn, pipeline, settings)
    source = finished(conn, source_id)
    assert source.status == "completed"
    assert dict(tools.calls) == {"tool_call.plan": 1, "tool_call.fetch[0]": 1, "tool_call.fetch[1]": 1,
                                 "tool_call.fetch[2]": 1, "tool_call.summarize": 1, "tool_call.send": 1}
    source_events = len(run_events(conn, source_id))

    new_id = rerun_run(conn, source_id, "tool_call.summarize", {"style": "brief"}, settings)
    rerun = finished(conn, new_id)
    assert rerun.status == "completed"
    assert tools.calls["tool_call.plan"] == 1 and all(tools.calls[f"tool_call.fetch[{i}]"] == 1 for i in range(3))
    assert tools.calls["tool_call.summarize"] == 2 and tools.calls["tool_call.send"] == 2
    assert outputs(rerun)["tool_call.send"] == {"sent": "brief: q0,q1,q2"}
    assert outputs(rerun)["tool_call.fetch"] == outputs(source)["tool_call.fetch"]  # copied, in order
    reused = {e.step for e in run_events(conn, new_id, "step_reused")}
    assert reused == {"tool_call.plan", "tool_call.fetch"}
    assert not {e.step for e in run_events(conn, new_id, "step_started")} & reused
    assert store.run_links(conn, new_id).source_run_id == source_id
    assert store.run_links(conn, source_id).reruns == (new_id,)
    assert store.run_get(conn, source_id) == source and len(run_events(conn, source_id)) == source_events
    assert verify_all(conn) == {}


def test_rerun_from_the_map_step_expands_it_again(conn, settings, tools, pipeline, inprocess_worker):
    inprocess_worker()
    source_id, _ = submit_run(conn, pipeline, settings)
    finished(conn, source_id)
    new_id = rerun_run(conn, source_id, "tool_call.fetch", None, settings)
    assert finished(conn, new_id).status == "completed"
    assert tools.calls["tool_call.plan"] == 1
    assert all(tools.calls[f"tool_call.fetch[{i}]"] == 2 for i in range(3))
    assert verify_all(conn) == {}


def test_rerun_is_refused_on_a_running_run_and_for_an_unknown_step(conn, settings, tools, pipeline):
    source_id, _ = submit_run(conn, pipeline, settings)  # no worker: it stays running
    with pytest.raises(Conflict, match="still running"):
        rerun_run(conn, source_id, "tool_call.send", None, settings)
    store.run_cancel(conn, source_id)
    with pytest.raises(InvalidRun, match="no step"):
        rerun_run(conn, source_id, "tool_call.nope", None, settings)
    with pytest.raises(InvalidRun, match="from the map step"):
        rerun_run(conn, source_id, "tool_call.fetch[0]", None, settings)


def test_rerun_of_a_failed_run_runs_the_failed_step_again(conn, settings, tools, inprocess_worker):
    attempts = {"n": 0}

    def flaky(ctx) -> dict:
        attempts["n"] += 1
        if ctx.input.get("broken"):
            raise RuntimeError("broken input")
        return {"ok": True}
    tools.register("flaky_t", flaky)
    tools.register("first_t", lambda ctx: {"first": True})
    body = make_run(step("tool_call.first", tool="first_t"),
                    step("tool_call.second", ["tool_call.first"], tool="flaky_t", broken=True, max_attempts=1))
    inprocess_worker()
    source_id, _ = submit_run(conn, body, settings)
    assert finished(conn, source_id).status == "failed"
    new_id = rerun_run(conn, source_id, "tool_call.second", {"broken": False}, settings)
    assert finished(conn, new_id).status == "completed"
    assert tools.calls["tool_call.first"] == 1 and tools.calls["tool_call.second"] == 2
    assert verify_all(conn) == {}


def test_cli_rerun_prints_the_new_run_id(conn, settings, db_url, spawn):
    source_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data"),
                                             step("tool_call.b", ["tool_call.a"], tool="transform")), settings)
    spawn("w1")
    finished(conn, source_id)
    command = [sys.executable, "-m", "engine", "rerun", str(source_id), "--from", "tool_call.b",
               "--input", '{"op": "stats"}']
    done = subprocess.run(command, cwd=ROOT, env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    new_id = done.stdout.strip()
    assert finished(conn, new_id).status == "completed"
    assert store.run_links(conn, new_id).source_run_id == source_id
    assert verify_all(conn) == {}
