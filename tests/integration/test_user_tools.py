"""Users' tools end to end with real worker processes: a throwaway tools package in a temp dir, two
worker pools with disjoint tools on one database, routing in the claim, refusal at submit, a step
that waits (visibly) for its only offering worker to come back, and the appliance's convention: a
folder `user_tools` in the app's directory is the package `user_tools` (README "Write your own
tools"), loaded by a worker started there as supervisord starts it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.config import WebSettings
from engine import store
from engine.errors import InvalidRun
from engine.store.tools import steps_waiting_for_tool
from engine.submit import submit_run
from tests.chaos.support import assert_invariants, run_events, wait_registered, wait_terminal
from tests.helpers import FAST_ENV, ROOT, WorkerProcess, make_run, step, wait_for
from tests.integration.test_readme_walkthrough import walkthrough_blocks
from tests.web.support import WEB_TEST_ENV

ALPHA = '''
"""Alpha pool's tools."""
from durable_agent import StepContext, tool


@tool("alpha", max_attempts=2, timeout_seconds=20, backoff=(0.01, 0.1))
def alpha(ctx: StepContext) -> dict:
    ctx.log.info("alpha handling %s (attempt %d)", ctx.step_name, ctx.attempt)
    if ctx.input.get("failFirst") and ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"items": [{"id": ctx.step_name, "topic": "alpha", "score": 50}], "key": ctx.idempotency_key}
'''

BETA = '''
"""Beta pool's tools: an async one."""
import asyncio

from durable_agent import PermanentError, StepContext, tool


@tool("beta")
async def beta(ctx: StepContext) -> dict:
    await asyncio.sleep(0.01)
    if ctx.input.get("refuse"):
        raise PermanentError("beta refuses")
    return {"parents": sorted(ctx.parents), "items": [{"id": "b", "topic": "beta", "score": 70}]}
'''


@pytest.fixture
def tools_dir(tmp_path: Path) -> Path:
    package = tmp_path / "tools_pkg"
    package.mkdir()
    (package / "alpha_tools.py").write_text(ALPHA)
    (package / "beta_tools.py").write_text(BETA)
    (package / "broken_tools.py").write_text("import this_module_does_not_exist\n")
    return package


@pytest.fixture
def pools(conn, spawn, tools_dir):  # noqa: ANN201 - (alpha worker, beta worker)
    path = f"{tools_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    alpha = spawn("alpha-1", 2, TOOL_MODULES="alpha_tools", PYTHONPATH=path)
    beta = spawn("beta-1", 2, TOOL_MODULES="beta_tools", PYTHONPATH=path)
    wait_registered(conn, alpha, beta)
    return alpha, beta


def mixed_run(index: int) -> dict:
    return make_run(
        step("tool_call.a", tool="alpha", failFirst=index == 0),
        step("tool_call.f", tool="fetch_data", query=f"q{index}"),
        step("tool_call.b", ["tool_call.a", "tool_call.f"], tool="beta"),
        step("tool_call.t", ["tool_call.b"], tool="transform"),
        step("llm_call.sum", ["tool_call.t", "tool_call.a"]),
        goal=f"mixed {index}")


def test_two_pools_each_claim_only_the_steps_of_their_tools(conn, settings, pools):
    alpha, beta = pools
    run_ids = [submit_run(conn, mixed_run(i), settings)[0] for i in range(6)]
    statuses = wait_terminal(conn, run_ids, 60)
    assert set(statuses.values()) == {"completed"}, statuses

    offered_by = {"alpha": {alpha.name}, "beta": {beta.name}}
    for run_id in run_ids:
        run = store.run_get(conn, str(run_id))
        tools = {s.id: s.tool for s in run.steps}
        for started in run_events(conn, run_id, "step_started"):
            allowed = offered_by.get(tools[started.step_id], {alpha.name, beta.name})
            assert started.worker in allowed, f"{started.step} ran on {started.worker}"
        a = next(s for s in run.steps if s.name == "tool_call.a")
        assert a.max_attempts == 2  # the tool's declared default reached the step
        b = next(s for s in run.steps if s.name == "tool_call.b")
        assert b.output["parents"] == ["tool_call.a", "tool_call.f"]  # async handler, parents by name
        logs = [e for e in run_events(conn, run_id, "step_log") if e.step_id == a.id]
        assert [e.detail["message"] for e in logs][-1] == f"alpha handling tool_call.a (attempt {a.attempt})"
        assert all(e.worker == alpha.name and e.detail["level"] == "info" for e in logs)
    first = store.run_get(conn, str(run_ids[0])).steps[0]
    assert first.attempt == 2  # failFirst: retried with the tool's backoff, on the alpha pool
    assert_invariants(conn, run_ids)


def test_a_tool_nobody_offers_is_refused_at_submit_with_the_known_tools(conn, settings, pools):
    with pytest.raises(InvalidRun) as refused:
        submit_run(conn, make_run(step("tool_call.g", tool="gamma")), settings)
    message = str(refused.value)
    assert "unknown tool 'gamma'" in message
    assert all(name in message for name in ("alpha", "beta", "fetch_data", "notify", "sleep", "transform"))
    assert store.run_ids(conn) == []


def test_a_step_whose_only_worker_died_waits_visibly_and_completes_when_one_returns(conn, settings, pools):
    alpha, beta = pools
    alpha.kill()
    run_id, _ = submit_run(conn, make_run(step("tool_call.f", tool="fetch_data"),
                                          step("tool_call.a", ["tool_call.f"], tool="alpha")), settings)
    waiting_step = wait_for(lambda: steps_waiting_for_tool(conn, run_id), 30, "the alpha step to wait")
    assert list(waiting_step.values()) == ["alpha"]

    flask_app = create_app({"settings": settings, "web": WebSettings.from_env(WEB_TEST_ENV), "TESTING": True})
    try:
        web = flask_app.test_client()
        body = web.get(f"/api/runs/{run_id}").get_json()
        by_name = {s["name"]: s for s in body["steps"]}
        assert by_name["tool_call.a"]["status"] == "ready"
        assert by_name["tool_call.a"]["waiting"] == "no live worker offers tool `alpha`"
        assert "waiting" not in by_name["tool_call.f"]
        page = web.get(f"/runs/{run_id}").get_data(as_text=True)
        assert "Waiting: no live worker offers tool `alpha`" in page
    finally:
        flask_app.extensions["dae"].broadcaster.stop()
        flask_app.extensions["dae"].pool.close()

    alpha.log.close()
    alpha.start()
    assert wait_terminal(conn, [run_id], 30)[str(run_id)] == "completed"
    started = [e for e in run_events(conn, run_id, "step_started") if e.step == "tool_call.a"]
    assert [e.worker for e in started] == [alpha.name]
    assert steps_waiting_for_tool(conn, run_id) == {}
    assert_invariants(conn, [run_id])


def test_a_tool_module_that_fails_to_import_stops_the_worker_before_it_registers(conn, db_url, tools_dir):
    env = {**os.environ, **FAST_ENV, "DATABASE_URL": db_url,
           "PYTHONPATH": f"{tools_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "TOOL_MODULES": "alpha_tools"}
    done = subprocess.run([sys.executable, "-m", "worker", "--name", "broken", "--tools", "beta_tools,broken_tools"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot load tool module 'broken_tools': ModuleNotFoundError" in done.stderr
    assert "this_module_does_not_exist" in done.stderr and "worker broken not started" in done.stderr
    assert store.workers_list(conn, include_gone=True) == []


# -- the appliance's folder: user_tools in the app's directory ------------------------------------

SCORING = '''
"""Not a tools module: a helper that the folder's tools import relatively."""


def score(word: str) -> int:
    return len(word)
'''

RANKED = '''
"""A tool that imports a sibling module of its folder (the folder is the package user_tools)."""
from durable_agent import StepContext, tool

from .scoring import score


@tool("rank_words")
def rank_words(ctx: StepContext) -> dict:
    return {"ranked": sorted(ctx.input["words"], key=score, reverse=True)}
'''


def app_directory(tmp_path: Path, tools: Path | None) -> Path:
    """The app's directory as supervisord's workers see it (`/app` in the image, the checkout with
    scripts/run): this checkout's entries, linked, and `user_tools` as a symlink to the user's folder
    of tools, as README's `ln -s` line makes it (a mount in the image; Python treats both alike)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv", ".data", "user_tools"):
            (app_dir / entry.name).symlink_to(entry)
    if tools is not None:
        (app_dir / "user_tools").symlink_to(tools, target_is_directory=True)
    return app_dir


def readme_tools_folder(tmp_path: Path, **extra: str) -> Path:
    """A folder of tools without `__init__.py`: README's own my_tools.py, plus `extra` modules."""
    tools = tmp_path / "tools"
    tools.mkdir()
    my_tools = next(code for _lang, code in walkthrough_blocks() if code.startswith("# my_tools.py"))
    (tools / "my_tools.py").write_text(my_tools)
    for name, code in extra.items():
        (tools / f"{name}.py").write_text(code)
    return tools


def test_a_user_tools_folder_in_the_app_directory_is_loaded_as_the_readme_says(conn, db_url, settings, tmp_path):
    app_dir = app_directory(tmp_path, readme_tools_folder(tmp_path, ranked=RANKED, scoring=SCORING))
    # Only the working directory puts the app and user_tools on the path, as under supervisord.
    worker = WorkerProcess(db_url, "worker-1", 2, log_dir=tmp_path, cwd=app_dir,
                           env={"TOOL_MODULES": "user_tools.my_tools,user_tools.ranked", "PYTHONPATH": ""})
    try:
        wait_registered(conn, worker)
        run_id, _ = submit_run(conn, make_run(
            step("tool_call.fetch", tool="fetch_data", query="postgres queues"),
            step("tool_call.count", ["tool_call.fetch"], tool="word_count"),
            step("tool_call.shout", tool="shout", text="done"),
            step("tool_call.rank", tool="rank_words", words=["a", "queue", "is"]),
            step("llm_call.summary", ["tool_call.count", "tool_call.shout", "tool_call.rank"]),
            goal="tools from the appliance's folder"), settings)
        assert wait_terminal(conn, [run_id], 60)[str(run_id)] == "completed", worker.output()
    finally:
        worker.stop()
    outputs = {s.name: s.output for s in store.run_get(conn, str(run_id)).steps}
    assert outputs["tool_call.count"]["words"] == 10  # the README walkthrough's figure
    assert outputs["tool_call.shout"]["text"] == "DONE"
    assert outputs["tool_call.rank"]["ranked"] == ["queue", "is", "a"]
    assert "tools loaded: rank_words, shout, word_count" in worker.output()
    assert_invariants(conn, [run_id])


@pytest.mark.parametrize("case", ["module fails", "no folder"])
def test_a_user_tools_module_that_cannot_load_stops_the_worker_with_the_reason(conn, db_url, tmp_path, case):
    tools = readme_tools_folder(tmp_path, broken='raise RuntimeError("MY_API_KEY is not set")\n')
    app_dir = app_directory(tmp_path, tools if case == "module fails" else None)
    env = {**os.environ, **FAST_ENV, "DATABASE_URL": db_url, "PYTHONPATH": "",
           "TOOL_MODULES": "user_tools.my_tools,user_tools.broken"}
    done = subprocess.run([sys.executable, "-m", "worker", "--name", "worker-1"],
                          cwd=app_dir, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr  # the appliance's watchdog stops on this status
    if case == "module fails":
        assert "cannot load tool module 'user_tools.broken': RuntimeError: MY_API_KEY is not set" in done.stderr
    else:
        assert ("cannot load tool module 'user_tools.my_tools': ModuleNotFoundError: No module named 'user_tools'"
                f" (looked in the working directory {app_dir} and on the Python path)") in done.stderr
    assert "worker worker-1 not started" in done.stderr
    assert store.workers_list(conn, include_gone=True) == []  # never a half-registered worker
