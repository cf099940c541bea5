"""Validation of the agent primitives' fields in a submitted run (no database here):
`map`/`maxItems` (dynamic fan-out), `delaySeconds` (durable timer), wait steps (`wait.<label>` with
`input.prompt`, `input.timeoutSeconds`, `input.onTimeout`) and the run's `deadlineSeconds`.

`engine.dag.parse_run` calls these; their results become fields of `StepSpec` and `RunSpec`.
"""
from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidRun

PRIMITIVE_STEP_KEYS = {"map", "maxItems", "delaySeconds"}
PRIMITIVE_RUN_KEYS = {"deadlineSeconds"}
MAX_DELAY_SECONDS = 7 * 86400.0
MAX_WAIT_SECONDS = 30 * 86400.0
MAX_DEADLINE_SECONDS = 7 * 86400.0
MAX_PROMPT_CHARS = 1000
ON_TIMEOUT = ("fail", "continue")
ON_REJECT = ("fail", "continue")
WAIT_KIND = "wait"
MAP_KIND = "map"  # the kind a map step is stored with (its children keep their own kind)
MAP_ITEMS_FIELD = "items"  # the field of the source's output that a map step fans out over
# Refused signals (the wait was already resolved, timed out or not yet waiting) change nothing, but
# each is kept with its payload for the audit: past this many per run, a refused signal is still
# answered 409 but no longer stored, so a flood of them cannot grow a run's data or its page
# without bound. Accepted signals (at most one per wait step) are always stored.
REFUSED_SIGNALS_KEPT_PER_RUN = 20


@dataclass(frozen=True)
class StepPrimitives:
    map_source: str | None = None
    max_items: int | None = None
    delay_seconds: float = 0.0
    wait_timeout_seconds: float | None = None
    wait_on_timeout: str | None = None
    wait_on_reject: str | None = None


def checked_number(value: object, where: str, key: str, low: float, high: float, integer: bool = False) -> float:
    """A numeric field's value as an int (`integer`) or else a float, never as the JSON happened to
    spell it: the store writes each field of all steps as one typed array, which cannot mix int and
    float. Every numeric field of a run (`engine.dag` too) is checked here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise InvalidRun(f"{where}: {key} must be {'an integer' if integer else 'a number'}")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidRun(f"{where}: {key} must be between {low:g} and {high:g}")
    return int(value) if integer else float(value)


def parse_step_primitives(raw: dict[str, Any], where: str, kind: str, step_input: dict[str, Any],
                          max_map_items: int) -> StepPrimitives:
    """The primitive fields of one step, checked."""
    delay = checked_number(raw.get("delaySeconds", 0), where, "delaySeconds", 0, MAX_DELAY_SECONDS)
    source = raw.get("map")
    max_items = None
    if source is not None:
        if kind == WAIT_KIND:
            raise InvalidRun(f"{where}: a wait step cannot be a map step")
        if not isinstance(source, str) or not source:
            raise InvalidRun(f"{where}: map must name the step whose output `items` it fans out over")
        if source.startswith(WAIT_KIND + "."):  # a signal's payload is not checked like a handler's output
            raise InvalidRun(f"{where}: a map step cannot fan out over a wait step; map over a step after it")
        max_items = int(checked_number(raw.get("maxItems", max_map_items), where, "maxItems", 1, max_map_items, True))
    elif "maxItems" in raw:
        raise InvalidRun(f"{where}: maxItems needs map")
    if kind != WAIT_KIND:
        return StepPrimitives(source, max_items, delay)
    prompt = step_input.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRun(f"{where}: input.prompt must be a string of at most {MAX_PROMPT_CHARS} characters")
    timeout = step_input.get("timeoutSeconds")
    if timeout is not None:
        timeout = checked_number(timeout, where, "input.timeoutSeconds", 0.001, MAX_WAIT_SECONDS)
    on_timeout = step_input.get("onTimeout", "fail")
    if on_timeout not in ON_TIMEOUT:
        raise InvalidRun(f"{where}: input.onTimeout must be one of {', '.join(ON_TIMEOUT)}")
    on_reject = step_input.get("onReject", "fail")
    if on_reject not in ON_REJECT:
        raise InvalidRun(f"{where}: input.onReject must be one of {', '.join(ON_REJECT)}")
    return StepPrimitives(None, None, delay, timeout, on_timeout, on_reject)


def parse_deadline(body: dict[str, Any]) -> float | None:
    if body.get("deadlineSeconds") is None:
        return None
    return checked_number(body["deadlineSeconds"], "run", "deadlineSeconds", 0.001, MAX_DEADLINE_SECONDS)


def collect_map_outputs(map_step_name: str, parents: dict[str, Any]) -> dict[str, Any]:
    """The output of an expanded map step: its children's outputs (parents named `<map>[i]`) as a
    list in item order. Its other parents (the source) are not part of it."""
    child = re.compile(re.escape(map_step_name) + r"\[(\d+)\]")
    indexed = sorted((int(m.group(1)), output) for name, output in parents.items() if (m := child.fullmatch(name)))
    return {MAP_ITEMS_FIELD: [output for _, output in indexed], "count": len(indexed)}


def public_sender(sender: str | None) -> str | None:
    """A signal's sender as shown publicly (events API, run page): an IP address loses its host
    part (203.0.113.7 → 203.0.113.x), so a public demo does not publish visitors' addresses. The
    full address is kept in the `signals` table, the audit of who sent what."""
    if not sender:
        return sender
    try:
        address = ipaddress.ip_address(sender)
    except ValueError:
        return sender  # not an address, e.g. "cli:alice"
    if address.version == 4:
        return sender.rsplit(".", 1)[0] + ".x"
    return str(ipaddress.ip_network(f"{address}/48", strict=False).network_address).rstrip(":") + "::x"

