"""The ready-made workflows of the dashboard's form, built from a few knobs.

Each builder returns a run body in the shape of `POST /runs`, so the form, the API and the tests
submit exactly the same thing. Retry backoffs are short so that the demo moves while someone
watches; the failure-rate knob, when set, adds injected transient failures to every step.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.config import Settings

DEMO_BACKOFF = {"baseSeconds": 0.5, "maxSeconds": 4}
MAX_BRANCHES = 8
MAX_FAILURE_RATE = 0.8
CHAOS_STEP_SECONDS = 4.0  # long enough to press Kill on the worker running the step
REDRIVE_ATTEMPTS = 2
DEAD_LETTER_ODDS = 1e-4  # with injected failures, maxAttempts keeps a step's chance of exhausting them below this


@dataclass(frozen=True)
class Knobs:
    goal: str
    failure_rate: float | None  # None: the workflow's own default
    branches: int


@dataclass(frozen=True)
class Workflow:
    key: str
    title: str
    description: str
    default_goal: str
    build: Callable[[Knobs, Settings], list[dict[str, Any]]]
    default_failure_rate: float = 0.0
    default_branches: int = 3


def _step(name: str, depends_on: list[str] | None = None, max_attempts: int | None = None,
          **step_input: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "input": step_input, "backoff": dict(DEMO_BACKOFF)}
    if depends_on:
        body["dependsOn"] = depends_on
    if max_attempts:
        body["maxAttempts"] = max_attempts
    return body


def _research(knobs: Knobs, settings: Settings) -> list[dict[str, Any]]:
    return [
        _step("tool_call.fetch", tool="fetch_data", query=knobs.goal, count=8),
        _step("tool_call.rank", ["tool_call.fetch"], tool="transform", op="top", n=5),
        _step("llm_call.summarize", ["tool_call.rank"], prompt=f"Summarize the findings for: {knobs.goal}"),
        _step("tool_call.notify", ["llm_call.summarize"], tool="notify"),
    ]


def _fan_out(knobs: Knobs, settings: Settings) -> list[dict[str, Any]]:
    fetches = [_step(f"tool_call.fetch_{i}", tool="fetch_data", query=f"{knobs.goal} (source {i})", count=4)
               for i in range(1, knobs.branches + 1)]
    names = [f["name"] for f in fetches]
    return [*fetches,
            _step("tool_call.merge", names, tool="transform", op="merge"),
            _step("llm_call.summarize", ["tool_call.merge"], prompt=f"Combine the sources on: {knobs.goal}")]


def _flaky(knobs: Knobs, settings: Settings) -> list[dict[str, Any]]:
    # Every step takes a few seconds, so a visitor who lands on the run page has time to find the
    # highlighted busy worker and press Kill while it is still running a step (about 20 s in all).
    fetches = [_step(f"tool_call.fetch_{i}", tool="fetch_data", query=f"{knobs.goal} (mirror {i})",
                     sleepSeconds=CHAOS_STEP_SECONDS) for i in range(1, knobs.branches + 1)]
    names = [f["name"] for f in fetches]
    return [*fetches,
            _step("tool_call.merge", names, tool="transform", op="top", n=6, sleepSeconds=CHAOS_STEP_SECONDS),
            _step("llm_call.summarize", ["tool_call.merge"], prompt=f"Summarize despite the flakiness: {knobs.goal}"),
            _step("tool_call.notify", ["llm_call.summarize"], tool="notify")]


def _poison_pill(knobs: Knobs, settings: Settings) -> list[dict[str, Any]]:
    # The pause before the crash keeps a restarted worker up longer than supervisord's startsecs.
    branch = [_step(f"tool_call.fetch_{i}", tool="fetch_data", query=f"{knobs.goal} (safe branch {i})")
              for i in range(1, knobs.branches + 1)]
    return [
        _step("tool_call.poison", tool="transform", crash=True, sleepSeconds=3.5, max_attempts=3),
        _step("llm_call.after_poison", ["tool_call.poison"], prompt="Never runs: its parent is a poison pill"),
        *branch,
        _step("llm_call.summarize", [b["name"] for b in branch], prompt=f"Summarize the safe branch: {knobs.goal}"),
    ]


def _slow(knobs: Knobs, settings: Settings) -> list[dict[str, Any]]:
    # Longer than a lease: only the heartbeats keep the step from being reclaimed.
    slow_seconds = round(settings.lease_seconds + 5, 1)
    return [
        _step("tool_call.fetch", tool="fetch_data", query=knobs.goal),
        _step("tool_call.slow_crunch", ["tool_call.fetch"], tool="transform", op="stats", sleepSeconds=slow_seconds),
        _step("llm_call.summarize", ["tool_call.slow_crunch"], prompt=f"Summarize the slow analysis: {knobs.goal}"),
    ]


def _redrive(knobs: Knobs, settings: Settings) -> list[dict[str, Any]]:
    # The flaky upload fails every attempt of its first budget and is dead-lettered; a redrive
    # grants fresh attempts with higher numbers, and `failTimes` counts by attempt number, so
    # those pass. The fetch before it succeeded once and is not run again.
    return [
        _step("tool_call.fetch", tool="fetch_data", query=knobs.goal),
        _step("tool_call.upload", ["tool_call.fetch"], REDRIVE_ATTEMPTS, tool="notify",
              failTimes=REDRIVE_ATTEMPTS, sleepSeconds=1.0),
        _step("llm_call.summarize", ["tool_call.upload"], prompt=f"Summarize after the redrive: {knobs.goal}"),
    ]


WORKFLOWS = {w.key: w for w in (
    Workflow("research", "Research and summarize", "fetch → rank → LLM summary → notify",
             "What makes a job queue durable?", _research),
    Workflow("fan_out", "Fan-out / fan-in", "parallel fetches merged, then summarised",
             "Compare Postgres queue designs", _fan_out),
    Workflow("flaky", "Flaky tools", "every step fails 40% of the time; retries win",
             "Summarize unreliable sources", _flaky, default_failure_rate=0.4),
    Workflow("poison_pill", "Poison pill", "a step that kills its worker, dead-lettered after 3 attempts",
             "Survive a poison pill", _poison_pill, default_branches=2),
    Workflow("slow", "Slow step", "outlives its lease; heartbeats keep it alive",
             "Crunch a slow dataset", _slow),
    Workflow("redrive", "Dead letter, then redrive", "a step fails all its attempts; Redrive it and the run completes",
             "Upload after an outage", _redrive),
)}


def build_run(key: str, knobs: Knobs, settings: Settings) -> dict[str, Any]:
    """The run body of workflow `key` with the given knobs (already validated)."""
    workflow = WORKFLOWS[key]
    steps = workflow.build(knobs, settings)
    rate = workflow.default_failure_rate if knobs.failure_rate is None else knobs.failure_rate
    if rate > 0:
        attempts = attempts_for(rate)
        for step in steps:
            if not step["input"].get("crash"):
                step["input"]["failureRate"] = rate
                step["maxAttempts"] = max(step.get("maxAttempts", 0), attempts)
    return {"goal": knobs.goal, "steps": steps}


def attempts_for(failure_rate: float) -> int:
    """Enough attempts that a step with this failure rate almost never exhausts them."""
    return max(3, min(50, math.ceil(math.log(DEAD_LETTER_ODDS) / math.log(failure_rate))))
