"""`Workflow`: build a run in Python instead of writing its JSON by hand.

The builder produces exactly the JSON `POST /api/runs` takes, and checks each step as it is added
with the engine's own validation (`engine.dag.parse_run`), so an error reads the same here as from
the API. Tool names are checked where the tools are known, at submission (`Client.submit`): a
script need not import the tools' code to use them.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from engine.config import Settings
from engine.dag import parse_run
from engine.errors import InvalidRun


class StepRef(str):
    """A step's name, returned by `Workflow.step` to pass to `after=`."""


class Workflow:
    """A run under construction: `wf = Workflow("Research"); a = wf.step("tool_call.search",
    tool="search", input={"q": "…"}); wf.step("llm_call.summarize", after=[a], prompt="…")`;
    then `Client(...).submit(wf)` or `wf.spec()` for the JSON."""

    def __init__(self, goal: str, settings: Settings | None = None, *, deadline_seconds: float | None = None,
                 budget: Mapping[str, float] | None = None) -> None:
        """`deadline_seconds`: the run fails with reason `deadline` after that long (unfinished steps
        cancelled); `budget`: `{"tokens": N, "usd": x}` for its LLM steps."""
        self.goal = goal
        self.settings = settings or Settings.from_env()
        self._steps: list[dict[str, Any]] = []
        self._run_fields: dict[str, Any] = {}
        if deadline_seconds is not None:
            self._run_fields["deadlineSeconds"] = deadline_seconds
        if budget is not None:
            self._run_fields["budget"] = dict(budget)

    def step(self, name: str, *, tool: str | None = None, input: Mapping[str, Any] | None = None,  # noqa: A002
             after: Iterable[str] = (), prompt: str | None = None, max_attempts: int | None = None,
             timeout_seconds: float | None = None,
             backoff: Mapping[str, float] | tuple[float, float] | None = None, map: str | None = None,  # noqa: A002
             max_items: int | None = None, delay_seconds: float | None = None,
             limit_key: str | None = None) -> StepRef:
        """Add a step and return its name for `after=`.

        `name` is `kind.label` (`tool_call.fetch`, `llm_call.summarize`); `tool` picks the tool of
        a `tool_call` (it becomes `input["tool"]`); `prompt` is an `llm_call`'s prompt; `after`
        lists the steps whose outputs this one needs (they reach the handler as `ctx.parents`);
        `max_attempts`, `timeout_seconds` and `backoff` (`(base, max)` seconds) override the
        tool's defaults. The agent primitives: `map` (a parent's name: one child per item of its
        output's `items`, at most `max_items`), `delay_seconds` (a durable timer: not started
        before then, holding no slot), `limit_key` (a provider limit); a `wait.<label>` step takes
        `input={"prompt", "timeoutSeconds", "onTimeout"}` and is resolved by `Client.signal`.
        Raises `InvalidRun` with the API's message if the step is not valid here.
        """
        body: dict[str, Any] = {"name": name, "input": {**({"tool": tool} if tool is not None else {}), **(input or {})}}
        if prompt is not None:
            body["input"]["prompt"] = prompt
        parents = [str(parent) for parent in after]
        if parents:
            body["dependsOn"] = parents
        if max_attempts is not None:
            body["maxAttempts"] = max_attempts
        if timeout_seconds is not None:
            body["timeoutSeconds"] = timeout_seconds
        if backoff is not None:
            base, cap = (backoff.get("baseSeconds"), backoff.get("maxSeconds")) if isinstance(backoff, Mapping) else backoff
            body["backoff"] = {k: v for k, v in (("baseSeconds", base), ("maxSeconds", cap)) if v is not None}
        for key, value in (("map", map), ("maxItems", max_items), ("delaySeconds", delay_seconds),
                           ("limitKey", limit_key)):
            if value is not None:
                body[key] = value
        self._steps.append(body)
        try:
            self.validate()
        except InvalidRun:
            self._steps.pop()  # a refused step leaves the workflow as it was
            raise
        return StepRef(name)

    def spec(self, idempotency_key: str | None = None) -> dict[str, Any]:
        """The run as the JSON body of `POST /api/runs` (a fresh copy), validated."""
        self.validate()
        body: dict[str, Any] = {"goal": self.goal, "steps": copy.deepcopy(self._steps),
                                **copy.deepcopy(self._run_fields)}
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return body

    def validate(self, known_tools: Iterable[str] | None = None) -> None:
        """Check the run as the API would; raises `InvalidRun` (or `TooLarge`). Without
        `known_tools`, any tool name passes here: submission checks them against the tools
        workers offer."""
        body = {"goal": self.goal, "steps": self._steps, **self._run_fields}
        named = {s["input"].get("tool") for s in self._steps if isinstance(s["input"].get("tool"), str)}
        parse_run(body, self.settings, set(known_tools) if known_tools is not None else named)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"Workflow({self.goal!r}, {len(self._steps)} step(s))"
