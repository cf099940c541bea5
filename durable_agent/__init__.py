"""Durable Agent Engine for your own code: write tools, build workflows, run and watch them.

    from durable_agent import tool, Workflow, Client, StepContext, PermanentError, RetryAfter

- `@tool("name", max_attempts=…, timeout_seconds=…, backoff=(base, max))` registers
  `fn(ctx: StepContext) -> dict` (or an `async def`) as a tool; workers load the module named by
  `TOOL_MODULES` or `python -m worker --tools`.
- `Workflow("goal")` builds a run; `.step(...)` adds steps, validated as the API validates them.
- `Client(database_url)` submits runs and reads, waits for, watches, cancels and redrives them;
  it returns `Run` records (`run.status` is a `RunStatus`, `run.steps` are `Step` records).
- `PermanentError` (dead-letter now) and `RetryAfter(seconds)` are what a tool raises to steer retries.

A thin façade over the engine: the same code runs the web app's submissions and the workers.
"""
from __future__ import annotations

from durable_agent.workflow import StepRef, Workflow
from engine.client import Client
from engine.errors import Conflict, InvalidRun, NotFound, PermanentError, RetryAfter
from engine.model import Run, RunStatus, Step, StepStatus
from engine.tools import StepContext
from engine.tools.registry import tool

__all__ = ["Client", "Conflict", "InvalidRun", "NotFound", "PermanentError", "RetryAfter", "Run", "RunStatus", "Step",
           "StepContext", "StepRef", "StepStatus", "Workflow", "tool"]
