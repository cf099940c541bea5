"""Validation of a submitted run: shape, names, tools, limits and the DAG itself.

`parse_run` turns the JSON body of `POST /runs` (or `engine submit`) into a `RunSpec`, or raises
`InvalidRun` with a message that names the problem. It touches no database: storing is the store's.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from engine.config import Settings
from engine.errors import InvalidRun, TooLarge
from engine.primitives import (
    PRIMITIVE_RUN_KEYS,
    PRIMITIVE_STEP_KEYS,
    WAIT_KIND,
    StepPrimitives,
    checked_number,
    parse_deadline,
    parse_step_primitives,
)

STEP_KINDS = ("tool_call", "llm_call", WAIT_KIND)
# \Z, not $: `$` also matches before a trailing newline, which would let "tool_call.a\n" through.
STEP_NAME = re.compile(r"(?P<kind>[a-z_]+)\.(?P<label>[A-Za-z0-9_-]{1,64})\Z")
STEP_KEYS = {"name", "input", "dependsOn", "maxAttempts", "timeoutSeconds", "backoff", "limitKey"} | PRIMITIVE_STEP_KEYS
RUN_KEYS = {"goal", "steps", "idempotencyKey", "budget"} | PRIMITIVE_RUN_KEYS
LIMIT_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,100}\Z")
MAX_GOAL_CHARS = 500
MAX_KEY_CHARS = 200
MAX_ATTEMPTS_LIMIT = 100
MAX_TIMEOUT_SECONDS = 3600.0
MAX_JSON_DEPTH = 64  # nesting of a run body; far more than any real input needs


@dataclass(frozen=True)
class StepSpec:
    name: str
    kind: str
    tool: str | None
    input: dict[str, Any]
    depends_on: tuple[str, ...]
    max_attempts: int
    timeout_seconds: float
    backoff_base: float
    backoff_max: float
    primitives: StepPrimitives = field(default_factory=StepPrimitives)
    limit_key: str | None = None  # provider limit key; an LLM step defaults to `llm:<model>`


@dataclass(frozen=True)
class RunSpec:
    goal: str
    steps: tuple[StepSpec, ...]
    idempotency_key: str | None = None
    request_hash: str = field(default="")
    deadline_seconds: float | None = None
    budget_tokens: int | None = None
    budget_usd: float | None = None


def parse_run(body: object, settings: Settings, known_tools: set[str]) -> RunSpec:
    if not isinstance(body, dict):
        raise InvalidRun("the request body must be a JSON object")
    check_storable(body)
    _reject_unknown_keys(body, RUN_KEYS, "run")
    goal = body.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        raise InvalidRun("goal must be a non-empty string")
    if len(goal) > MAX_GOAL_CHARS:
        raise TooLarge(f"goal is longer than {MAX_GOAL_CHARS} characters")
    key = body.get("idempotencyKey")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS):
        raise InvalidRun(f"idempotencyKey must be a non-empty string of at most {MAX_KEY_CHARS} characters")
    raw_steps = body.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise InvalidRun("steps must be a non-empty list")
    if len(raw_steps) > settings.max_steps_per_run:
        raise TooLarge(f"a run may have at most {settings.max_steps_per_run} steps, this one has {len(raw_steps)}")
    steps = tuple(_parse_step(i, raw, settings, known_tools) for i, raw in enumerate(raw_steps))
    _check_graph(steps, settings)
    _check_crash_budget(steps, settings)
    input_bytes = sum(len(_canonical(s.input)) for s in steps)
    if input_bytes > settings.max_input_bytes:
        raise TooLarge(f"the steps' inputs total {input_bytes} bytes, more than the limit of {settings.max_input_bytes}")
    deadline = parse_deadline(body)
    budget_tokens, budget_usd = _parse_budget(body.get("budget"))
    hashed: dict[str, Any] = {"goal": goal, "steps": raw_steps}
    if deadline:
        hashed["deadlineSeconds"] = deadline
    if "budget" in body:  # runs without a budget keep the hash they always had
        hashed["budget"] = body["budget"]
    request_hash = hashlib.sha256(_canonical(hashed).encode()).hexdigest()
    return RunSpec(goal=goal.strip(), steps=steps, idempotency_key=key, request_hash=request_hash,
                   deadline_seconds=deadline, budget_tokens=budget_tokens, budget_usd=budget_usd)


def _parse_budget(budget: object) -> tuple[int | None, float | None]:
    """`budget: {"tokens": N, "usd": x}` (either or both): LLM spend at which the run is stopped."""
    if budget is None:
        return None, None
    if not isinstance(budget, dict) or not budget or set(budget) - {"tokens", "usd"}:
        raise InvalidRun('budget must be an object with "tokens" and/or "usd"')
    tokens = budget.get("tokens")
    usd = budget.get("usd")
    if tokens is not None:
        tokens = int(_number(budget, "tokens", "budget", 0, 1, 10**12, True))
    if usd is not None:
        usd = float(_number(budget, "usd", "budget", 0, 0.000001, 10**6))
    return tokens, usd


def parse_json(text: str | bytes) -> object:
    """A request body as JSON, or InvalidRun: malformed, `NaN`/`Infinity` (not JSON, and Postgres's
    jsonb refuses them), or nested so deeply that the parser gives up."""
    def refuse(constant: str) -> object:
        raise InvalidRun(f"{constant} is not a JSON number")
    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise InvalidRun(f"the JSON is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except UnicodeDecodeError:
        raise InvalidRun("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidRun(f"malformed JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def check_storable(body: object) -> None:
    """Refuse what JSON allows but Postgres cannot store or Python cannot encode: NUL characters,
    lone surrogates (`"\\ud800"`), non-finite numbers, and nesting deeper than MAX_JSON_DEPTH.
    Iterative, so no body can exhaust the stack here."""
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRun(f"the JSON is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidRun("NaN and Infinity are not JSON numbers")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(str(key))
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)



def check_signal_payload(payload: object, max_bytes: int) -> None:
    """A signal's payload becomes a wait step's output, so it is held to the rules of a run's input:
    a JSON object Postgres can store (`check_storable`) of at most `max_bytes` (MAX_INPUT_BYTES)."""
    if not isinstance(payload, dict):
        raise InvalidRun("the signal's payload must be a JSON object")
    check_storable(payload)
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    if size > max_bytes:
        raise TooLarge(f"the signal's payload is {size} bytes, more than the limit of {max_bytes} (MAX_INPUT_BYTES)")

def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidRun("text may not contain NUL characters (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRun("text may not contain lone surrogates (such as \\ud800)") from None


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reject_unknown_keys(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidRun(f"unknown field(s) in {where}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _parse_step(index: int, raw: object, settings: Settings, known_tools: set[str]) -> StepSpec:
    if not isinstance(raw, dict):
        raise InvalidRun(f"step #{index + 1} must be an object")
    name = raw.get("name")
    where = f"step {name!r}" if isinstance(name, str) else f"step #{index + 1}"
    _reject_unknown_keys(raw, STEP_KEYS, where)
    if not isinstance(name, str):
        raise InvalidRun(f"{where}: name must be a string like 'tool_call.fetch_data'")
    match = STEP_NAME.fullmatch(name)
    if not match:
        raise InvalidRun(f"{where}: name must look like 'kind.label' (letters, digits, _ or -), e.g. 'tool_call.fetch'")
    kind = match["kind"]
    if kind not in STEP_KINDS:
        raise InvalidRun(f"{where}: unknown step kind {kind!r} (known: {', '.join(STEP_KINDS)})")
    step_input = raw.get("input", {})
    if not isinstance(step_input, dict):
        raise InvalidRun(f"{where}: input must be a JSON object")
    tool = None
    if kind == "tool_call":
        tool = step_input.get("tool")
        if not isinstance(tool, str) or tool not in known_tools:
            raise InvalidRun(f"{where}: unknown tool {tool!r} (known: {', '.join(sorted(known_tools))})")
    _check_chaos_knobs(where, step_input)
    depends_on = raw.get("dependsOn", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise InvalidRun(f"{where}: dependsOn must be a list of step names")
    if len(set(depends_on)) != len(depends_on):
        raise InvalidRun(f"{where}: dependsOn lists a step twice")
    primitives = parse_step_primitives(raw, where, kind, step_input, settings.max_map_items)
    if primitives.map_source and primitives.map_source not in depends_on:
        depends_on = [*depends_on, primitives.map_source]  # a map step waits for its source
    max_attempts = _number(raw, "maxAttempts", where, settings.default_max_attempts, 1, MAX_ATTEMPTS_LIMIT, True)
    timeout = _number(raw, "timeoutSeconds", where, settings.step_timeout_seconds, 0.001, MAX_TIMEOUT_SECONDS)
    backoff = raw.get("backoff", {})
    if not isinstance(backoff, dict):
        raise InvalidRun(f"{where}: backoff must be an object with baseSeconds and maxSeconds")
    _reject_unknown_keys(backoff, {"baseSeconds", "maxSeconds"}, f"{where} backoff")
    base = _number(backoff, "baseSeconds", where, settings.retry_base_seconds, 0, 3600)
    cap = _number(backoff, "maxSeconds", where, max(settings.retry_max_seconds, base), base, 86400)
    limit_key = raw.get("limitKey")
    if limit_key is not None and (not isinstance(limit_key, str) or not LIMIT_KEY.match(limit_key)):
        raise InvalidRun(f"{where}: limitKey must be 1-100 letters, digits or _ . : / -")
    if limit_key is not None and kind == WAIT_KIND:
        # A wait holds no slot and calls no provider while it waits: a limit could only stall it.
        raise InvalidRun(f"{where}: a wait step takes no limitKey")
    if limit_key is None and kind == "llm_call":
        limit_key = default_llm_limit_key(step_input, settings)
    return StepSpec(name, kind, tool, step_input, tuple(depends_on), int(max_attempts), timeout, base, cap,
                    primitives, limit_key)


def default_llm_limit_key(step_input: dict, settings: Settings) -> str:
    """An LLM step is limited by its provider and model: `llm:<model>` (`llm:offline` without a
    provider), so limit `llm` covers them all and `llm:<model>` one model."""
    if not settings.llm_base_url:
        return "llm:offline"
    return f"llm:{step_input.get('model') or settings.llm_model}"[:100]


def _number(obj: dict, key: str, where: str, default: float, low: float, high: float,
            integer: bool = False) -> float:
    return checked_number(obj.get(key, default), where, key, low, high, integer)


def _check_chaos_knobs(where: str, step_input: dict) -> None:
    if "failureRate" in step_input:
        _number(step_input, "failureRate", where, 0, 0, 1)
    if "failTimes" in step_input:
        _number(step_input, "failTimes", where, 0, 0, MAX_ATTEMPTS_LIMIT, True)
    if "sleepSeconds" in step_input:
        _number(step_input, "sleepSeconds", where, 0, 0, MAX_TIMEOUT_SECONDS)
    if "crash" in step_input and not isinstance(step_input["crash"], bool):
        raise InvalidRun(f"{where}: crash must be true or false")


def _check_crash_budget(steps: tuple[StepSpec, ...], settings: Settings) -> None:
    """Every attempt of a step with `crash` kills the worker running it: bound what one run may
    cost the appliance (DESIGN.md §8), whatever its steps' maxAttempts say."""
    crashes = sum(s.max_attempts for s in steps if s.input.get("crash") is True)
    if crashes > settings.max_crash_attempts_per_run:
        raise InvalidRun(f"the steps with crash=true would crash a worker up to {crashes} times (their maxAttempts "
                         f"added up); a run may crash workers at most {settings.max_crash_attempts_per_run} times")


def _check_graph(steps: tuple[StepSpec, ...], settings: Settings) -> None:
    names: set[str] = set()
    for step in steps:
        if step.name in names:
            raise InvalidRun(f"duplicate step name {step.name!r}")
        names.add(step.name)
    edges = 0
    for step in steps:
        for parent in step.depends_on:
            if parent == step.name:
                raise InvalidRun(f"step {step.name!r} depends on itself")
            if parent not in names:
                raise InvalidRun(f"step {step.name!r} depends on unknown step {parent!r}")
            edges += 1
    if edges > settings.max_edges_per_run:
        raise TooLarge(f"a run may have at most {settings.max_edges_per_run} dependencies, this one has {edges}")
    cycle = find_cycle({s.name: list(s.depends_on) for s in steps})
    if cycle:
        raise InvalidRun("dependency cycle: " + " -> ".join(cycle))


def find_cycle(parents: dict[str, list[str]]) -> list[str] | None:
    """A cycle as a closed path of names (first == last), or None. Iterative DFS: no recursion limit."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in parents:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, next_index = stack.pop()
            if next_index == 0:
                state[node] = 1
                path.append(node)
            deps = parents[node]
            if next_index < len(deps):
                stack.append((node, next_index + 1))
                child = deps[next_index]
                if state.get(child) == 1:
                    return [*path[path.index(child):], child][::-1]
                if not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def layers(parents: dict[str, list[str]]) -> dict[str, int]:
    """Depth of each step in an acyclic graph (roots are 0): the layered layout of the DAG picture."""
    depth: dict[str, int] = {}
    remaining = dict(parents)
    while remaining:
        placed = {n: 1 + max((depth[p] for p in ps), default=-1)
                  for n, ps in remaining.items() if all(p in depth for p in ps)}
        if not placed:
            raise ValueError("graph has a cycle")
        depth.update(placed)
        for name in placed:
            del remaining[name]
    return depth
