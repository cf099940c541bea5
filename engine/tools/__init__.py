"""Step handlers: the registry of tools, the context a handler receives, and the chaos knobs.

A handler is `handler(ctx) -> dict`. It may raise `PermanentError` (dead-letter now), `RetryAfter`
(retry after a given delay) or any other exception (a transient failure, retried with backoff).
"""
from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from engine.config import Settings

if TYPE_CHECKING:
    import psycopg


class TransientToolError(Exception):
    """A failure worth retrying (the chaos knobs raise it)."""


@dataclass
class StepContext:
    """What a handler gets: its input, its parents' outputs by step name, and the identity of this
    attempt (`idempotency_key` is stable across attempts, `attempt` is the fencing token)."""

    run_id: UUID
    step_name: str
    input: dict[str, Any]
    parents: dict[str, Any]
    attempt: int
    settings: Settings
    record_notification: Callable[[str], bool] = field(default=lambda message: True)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # For LLM steps (streamed text, usage, provider pauses): the step's id, the limit that admitted
    # it, and short-lived database connections of the worker's (None: nothing is stored).
    step_id: int = 0
    limit_key: str | None = None
    connections: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None
    rng: random.Random = field(default_factory=random.Random)  # the worker's chaos draws (CHAOS_SEED)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.step_name}"

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the attempt is taken away (reclaimed or cancelled)."""
        if self.cancelled.wait(seconds):
            raise TransientToolError("attempt taken away while sleeping")


Handler = Callable[[StepContext], dict]


def tool_names() -> set[str]:
    from engine.tools.builtin import TOOLS
    return set(TOOLS)


def run_step(kind: str, tool: str | None, ctx: StepContext) -> dict:
    """Apply the chaos knobs of the input, then run the tool or the LLM call."""
    apply_chaos(ctx)
    if kind == "llm_call":
        from engine.tools.llm import llm_call
        return llm_call(ctx)
    from engine.tools.builtin import TOOLS
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}")
    return TOOLS[tool](ctx)


def apply_chaos(ctx: StepContext) -> None:
    """`sleepSeconds`, `crash`, `failTimes` (fails attempts 1..N) and `failureRate` on any step."""
    knobs = ctx.input
    if knobs.get("sleepSeconds"):
        ctx.sleep(float(knobs["sleepSeconds"]))
    if knobs.get("crash"):
        # As a segfault or the OOM killer would: no cleanup, no goodbye to the database.
        os.kill(os.getpid(), signal.SIGKILL)
    if ctx.attempt <= int(knobs.get("failTimes", 0)):
        raise TransientToolError(f"injected failure (failTimes={knobs['failTimes']}, attempt {ctx.attempt})")
    rate = float(knobs.get("failureRate", 0))
    if rate and ctx.rng.random() < rate:
        raise TransientToolError(f"injected transient failure (failureRate={rate:g})")
