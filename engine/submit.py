"""Submitting a run: validate the body against the offered tools and limits, then store it in
one transaction. The web app, the CLI, the Python client and the tests all go through here.

A tool is known when it is built in or some worker has offered it (the `tools` table, written when
a worker registers); a user's tool's declared defaults (`@tool(max_attempts=…)`) fill the step
fields the body leaves out, so every submitter gets the same steps whatever code it imported.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from engine import store
from engine.config import Settings
from engine.dag import parse_run
from engine.store.tools import tools_known
from engine.tools.registry import BUILTIN_TOOL_NAMES, ToolDefaults


def submit_run(conn: psycopg.Connection, body: object, settings: Settings, client: str | None = None,
               enforce_caps: bool = False) -> tuple[UUID, bool]:
    """Returns (run id, created). Raises InvalidRun/TooLarge (nothing stored), Conflict for a reused
    idempotency key with a different body, RateLimited when active-run caps are hit."""
    body, known = with_offered_tools(conn, body)
    spec = parse_run(body, settings, known)
    caps = (settings.max_active_runs, settings.max_active_runs_per_client) if enforce_caps else (0, 0)
    return store.run_submit(conn, spec, client=client, max_active=caps[0], max_active_per_client=caps[1],
                            reserved_for_new_clients=settings.reserved_active_runs if enforce_caps else 0)


def with_offered_tools(conn: psycopg.Connection, body: object) -> tuple[object, set[str]]:
    """The body with users' tools' defaults filled in, and the known tool names. A body that uses
    only built-in tools costs no query (the demo's submit path stays as fast as before)."""
    steps = body.get("steps") if isinstance(body, dict) else None
    if not isinstance(steps, list):
        return body, set(BUILTIN_TOOL_NAMES)
    requested = {_tool_of(s) for s in steps} - {None}
    if requested <= BUILTIN_TOOL_NAMES:
        return body, set(BUILTIN_TOOL_NAMES)
    offered = tools_known(conn)
    filled = [_with_defaults(s, offered) for s in steps]
    return {**body, "steps": filled}, set(BUILTIN_TOOL_NAMES) | set(offered)


def _tool_of(step: Any) -> str | None:
    """The tool a raw step names, if it is shaped well enough to name one (parse_run judges the rest)."""
    tool = step.get("input", {}).get("tool") if isinstance(step, dict) and isinstance(step.get("input"), dict) else None
    return tool if isinstance(tool, str) else None


def _with_defaults(step: Any, offered: dict[str, ToolDefaults]) -> Any:
    defaults = offered.get(_tool_of(step) or "")
    if defaults is None:
        return step
    return {**defaults.step_fields(), **step}
