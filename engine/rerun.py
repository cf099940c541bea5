"""Re-run from a step: a new run that reuses (copies) the outputs of every step not downstream of
`fromStep`, and runs `fromStep` and everything downstream afresh, optionally with new input for
`fromStep`. Steps of the source that had not succeeded run again too (with their descendants).
The web app, the CLI and the tests all go through `rerun_run`."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from engine.config import Settings
from engine.dag import parse_run
from engine.errors import Conflict, InvalidRun
from engine.model import RunStatus, StepStatus
from engine.store.rerun import SourceRun, rerun_insert, rerun_source
from engine.tools import tool_names


def downstream(source: SourceRun, roots: set[str]) -> set[str]:
    """`roots` and every step that depends on one of them, directly or not."""
    children: dict[str, list[str]] = {}
    for step in source.steps:
        for parent in step.depends_on:
            children.setdefault(parent, []).append(step.name)
    found, stack = set(roots), list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def rerun_body(source: SourceRun, from_step: str, input_override: dict[str, Any] | None) -> dict[str, Any]:
    """The source run as a `POST /runs` body, with `from_step`'s input overridden key by key."""
    steps = []
    for step in source.steps:
        body: dict[str, Any] = {"name": step.name, "input": dict(step.input), "maxAttempts": step.max_attempts,
                                "timeoutSeconds": step.timeout_seconds,
                                "backoff": {"baseSeconds": step.backoff_base, "maxSeconds": step.backoff_max}}
        if step.name == from_step and input_override:
            body["input"].update(input_override)
        if step.depends_on:
            body["dependsOn"] = list(step.depends_on)
        if step.delay_seconds:
            body["delaySeconds"] = step.delay_seconds
        if step.map_source:
            body["map"], body["maxItems"] = step.map_source, step.max_items
        if step.limit_key:
            body["limitKey"] = step.limit_key
        steps.append(body)
    run: dict[str, Any] = {"goal": source.goal, "steps": steps}
    if source.deadline_seconds:
        run["deadlineSeconds"] = source.deadline_seconds  # the same allowance, counted from the new start
    if source.budget:
        run["budget"] = source.budget  # the same allowance; the re-run's spend starts at zero
    return run


def rerun_run(conn: psycopg.Connection, source_run_id: UUID | str, from_step: object,
              input_override: object, settings: Settings, client: str | None = None,
              enforce_caps: bool = False) -> UUID:
    """Create the re-run; returns its id. InvalidRun for a bad request, Conflict for a running source."""
    if not isinstance(from_step, str) or not from_step:
        raise InvalidRun("fromStep must name a step of the run")
    if input_override is not None and not isinstance(input_override, dict):
        raise InvalidRun("input must be a JSON object of the input fields to override")
    source = rerun_source(conn, source_run_id)
    if source.status == RunStatus.RUNNING:
        raise Conflict(f"run {source.id} is still running; re-run it once it has finished (or cancel it)")
    if from_step not in {s.name for s in source.steps}:
        hint = " (re-run a map step's children from the map step)" if "[" in from_step else ""
        raise InvalidRun(f"run {source.id} has no step {from_step[:100]!r}{hint}")
    unfinished = {s.name for s in source.steps if s.status != StepStatus.SUCCEEDED}
    to_run = downstream(source, {from_step} | unfinished)
    spec = parse_run(rerun_body(source, from_step, input_override), settings, tool_names())
    reused = {s.name: s.output for s in source.steps if s.name not in to_run}
    caps = (settings.max_active_runs, settings.max_active_runs_per_client) if enforce_caps else (0, 0)
    return rerun_insert(conn, spec, source.id, from_step, reused, client, *caps)
