"""The Python SDK without a database: the `@tool` registry and its checks, loading tool modules,
async handlers, `ctx.log`'s cap, and the `Workflow` builder's JSON and messages (the API's own)."""
from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from pathlib import Path

import pytest

import durable_agent
from durable_agent import InvalidRun, StepContext, Workflow, tool
from engine.config import Settings
from engine.dag import parse_run
from engine.tools import MAX_LOG_LINES_PER_ATTEMPT, run_step
from engine.tools.registry import ToolLoadError, get_tool, load_tool_modules, parse_module_list, unregister


@pytest.fixture
def registered() -> list[str]:
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def context(tool_name: str, **input_: object) -> StepContext:
    return StepContext(run_id=uuid.uuid4(), step_name="tool_call.t", input={"tool": tool_name, **input_},
                       parents={}, attempt=1, settings=Settings.from_env({}))


def test_the_public_surface_is_importable_from_one_package():
    from durable_agent import Client, PermanentError, RetryAfter  # noqa: F401 - the import is the test
    assert {"tool", "Workflow", "Client", "StepContext", "PermanentError", "RetryAfter"} <= set(durable_agent.__all__)
    for name in durable_agent.__all__:
        assert getattr(durable_agent, name).__doc__, f"{name} has no docstring"


def test_a_tool_registers_with_its_defaults_and_runs_through_the_dispatcher(registered):
    @tool("sdk_echo", max_attempts=3, timeout_seconds=9, backoff={"baseSeconds": 0.5, "maxSeconds": 4})
    def echo(ctx: StepContext) -> dict:
        return {"echo": ctx.input["text"], "key": ctx.idempotency_key}
    registered.append("sdk_echo")

    spec = get_tool("sdk_echo")
    assert spec is not None and spec.handler is echo
    assert spec.defaults.step_fields() == {"maxAttempts": 3, "timeoutSeconds": 9.0,
                                           "backoff": {"baseSeconds": 0.5, "maxSeconds": 4.0}}
    ctx = context("sdk_echo", text="hi")
    assert run_step("tool_call", "sdk_echo", ctx) == {"echo": "hi", "key": f"{ctx.run_id}:tool_call.t"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "fetch_data"}, "is a built-in tool"),
    ({"name": "9lives"}, "must start with a letter"),
    ({"name": "ok", "max_attempts": 0}, "max_attempts must be an integer between 1 and 100"),
    ({"name": "ok", "timeout_seconds": -1}, "timeout_seconds must be between"),
    ({"name": "ok", "backoff": (5, 1)}, "backoff must be (base, max)"),
])
def test_bad_tool_declarations_are_refused_at_import(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tool(name, **kwargs)


def test_one_name_cannot_be_registered_by_two_functions(registered):
    tool("sdk_twice")(lambda ctx: {})
    registered.append("sdk_twice")
    with pytest.raises(ValueError, match="registered twice"):
        @tool("sdk_twice")
        def other(ctx: StepContext) -> dict:
            return {}


def test_an_async_tool_runs_and_is_cancelled_when_its_attempt_is_taken_away(registered):
    finished = threading.Event()

    @tool("sdk_async")
    async def slow(ctx: StepContext) -> dict:
        await asyncio.sleep(float(ctx.input["seconds"]))
        finished.set()
        return {"slept": ctx.input["seconds"]}
    registered.append("sdk_async")

    assert run_step("tool_call", "sdk_async", context("sdk_async", seconds=0.01)) == {"slept": 0.01}
    finished.clear()
    ctx = context("sdk_async", seconds=30)
    threading.Timer(0.1, ctx.cancelled.set).start()
    with pytest.raises(TimeoutError, match="taken away"):
        run_step("tool_call", "sdk_async", ctx)
    assert not finished.is_set()

    async def from_a_running_loop() -> dict:
        return run_step("tool_call", "sdk_async", context("sdk_async", seconds=0.01))
    result: dict = {}  # a thread of its own: under the full suite, this thread may already run a loop
    caller = threading.Thread(target=lambda: result.update(asyncio.run(from_a_running_loop())))
    caller.start()
    caller.join(30)
    assert result == {"slept": 0.01}


def test_ctx_log_writes_through_the_recorder_and_stops_at_the_cap():
    lines: list[tuple[str, str]] = []
    ctx = StepContext(run_id=uuid.uuid4(), step_name="tool_call.t", input={}, parents={}, attempt=1,
                      settings=Settings.from_env({}), record_log=lambda level, message: lines.append((level, message)) or True)
    assert ctx.log.info("fetched %d bytes from %s", 12, "x") and ctx.log.warning("slow")
    assert lines == [("info", "fetched 12 bytes from x"), ("warning", "slow")]
    results = [ctx.log.debug("line %d", i) for i in range(MAX_LOG_LINES_PER_ATTEMPT)]
    assert results.count(False) == 2 and len(lines) == MAX_LOG_LINES_PER_ATTEMPT


def test_loading_a_module_that_fails_names_it_and_the_cause(tmp_path: Path, monkeypatch, registered):
    (tmp_path / "sdk_good_tools.py").write_text("from durable_agent import tool\n"
                                                "@tool('sdk_good')\ndef good(ctx):\n    return {}\n")
    (tmp_path / "sdk_bad_tools.py").write_text("raise RuntimeError('no API key configured')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registered.append("sdk_good")
    assert parse_module_list("sdk_good_tools, ", ["sdk_good_tools,sdk_bad_tools"]) == ["sdk_good_tools", "sdk_bad_tools"]
    assert "sdk_good" in load_tool_modules(["sdk_good_tools"])
    with pytest.raises(ToolLoadError, match="cannot load tool module 'sdk_bad_tools': RuntimeError: no API key configured"):
        load_tool_modules(["sdk_bad_tools"])
    with pytest.raises(ToolLoadError, match="ModuleNotFoundError"):
        load_tool_modules(["sdk_no_such_module"])
    sys.modules.pop("sdk_good_tools", None)


def test_the_workflow_builds_the_api_json():
    wf = Workflow("Research")
    a = wf.step("tool_call.search", tool="search", input={"q": "postgres"})
    wf.step("llm_call.summarize", after=[a], prompt="Summarize", max_attempts=3, backoff=(1, 30))
    assert wf.spec(idempotency_key="k1") == {
        "goal": "Research", "idempotencyKey": "k1",
        "steps": [{"name": "tool_call.search", "input": {"tool": "search", "q": "postgres"}},
                  {"name": "llm_call.summarize", "input": {"prompt": "Summarize"}, "dependsOn": ["tool_call.search"],
                   "maxAttempts": 3, "backoff": {"baseSeconds": 1, "maxSeconds": 30}}]}


@pytest.mark.parametrize("build", [
    lambda wf: wf.step("tool_call.a", tool="x"),  # duplicate of the first step
    lambda wf: wf.step("llm_call.b", after=["tool_call.nope"]),
    lambda wf: wf.step("summarize"),
    lambda wf: wf.step("agent_call.x"),
    lambda wf: wf.step("tool_call.b"),  # no tool
    lambda wf: wf.step("llm_call.c", max_attempts=1000),
    lambda wf: wf.step("llm_call.c", input={"failureRate": 2}),
])
def test_the_workflow_refuses_what_the_api_refuses_with_the_same_message(build):
    wf = Workflow("g")
    wf.step("tool_call.a", tool="x")
    with pytest.raises(InvalidRun) as from_builder:
        build(wf)
    assert len(wf) == 1  # the refused step was not kept
    body = {"goal": "g", "steps": [*wf.spec()["steps"], _last_attempt(build)]}
    with pytest.raises(InvalidRun) as from_api:
        parse_run(body, Settings.from_env({}), {"x"})
    assert str(from_builder.value) == str(from_api.value)


def _last_attempt(build) -> dict:  # noqa: ANN001 - the parametrized lambda
    """The JSON of the step `build` tried to add (recorded by a builder that accepts anything)."""
    class Recorder(Workflow):
        def validate(self, known_tools: object = None) -> None:
            pass
    recorder = Recorder("g")
    recorder.step("tool_call.a", tool="x")
    build(recorder)
    return recorder._steps[-1]
