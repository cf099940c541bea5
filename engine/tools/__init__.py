"""Step handlers: the context a handler receives, dispatch to the built-in or a user's tool, and
the chaos knobs. Users' tools are registered with `@tool` (`engine.tools.registry`).

A handler is `handler(ctx) -> dict`. It may raise `PermanentError` (dead-letter now), `RetryAfter`
(retry after a given delay) or any other exception (a transient failure, retried with backoff).
"""
from __future__ import annotations

import logging
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
from engine.errors import PermanentError

if TYPE_CHECKING:
    import psycopg


class TransientToolError(Exception):
    """A failure worth retrying (the chaos knobs raise it)."""


MAX_LOG_LINES_PER_ATTEMPT = 100  # the audit log is shared by every run: a chatty tool must not flood it
MAX_LOG_CHARS = 2000


class StepLogger:
    """`ctx.log`: writes `step_log` events (detail `{level, message}`) to the run's event log, fenced
    by the attempt (a zombie attempt's lines are dropped), and to the worker's own log. Use it like
    a `logging.Logger`: `ctx.log.info("fetched %d bytes", n)`. At most 100 lines per attempt."""

    def __init__(self, record: Callable[[str, str], bool], step_name: str) -> None:
        self._record = record
        self._step_name = step_name
        self._written = 0
        self._local = logging.getLogger("worker.tools")

    def log(self, level: str, message: str, *args: object) -> bool:
        """Write one line; returns False when it was not written (over the cap, or the attempt was
        taken away)."""
        text = (message % args if args else str(message))[:MAX_LOG_CHARS]
        self._local.log(logging.getLevelName(level.upper()), "%s: %s", self._step_name, text)
        if self._written >= MAX_LOG_LINES_PER_ATTEMPT:
            return False
        self._written += 1
        return self._record(level, text)

    def debug(self, message: str, *args: object) -> bool:
        return self.log("debug", message, *args)

    def info(self, message: str, *args: object) -> bool:
        return self.log("info", message, *args)

    def warning(self, message: str, *args: object) -> bool:
        return self.log("warning", message, *args)

    def error(self, message: str, *args: object) -> bool:
        return self.log("error", message, *args)


@dataclass
class StepContext:
    """What a tool's handler gets for one attempt of one step.

    - `input`: the step's `input` object (for a `tool_call`, including `"tool"`).
    - `parents`: the outputs of the steps it depends on, by step name.
    - `run_id`, `step_name`, `attempt`: the attempt number is the fencing token; it only grows.
    - `idempotency_key`: `"{run_id}:{step_name}"`, the same on every attempt: pass it to outside
      services so a retried side effect happens once.
    - `cancelled`: a `threading.Event` set when the attempt is taken away (timeout, reclaim, run
      cancelled); a long handler should check it.
    - `sleep(seconds)`: sleeps, but wakes and raises as soon as `cancelled` is set.
    - `log`: a logger whose lines become `step_log` events of the run (see `StepLogger`).
    """

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
    record_log: Callable[[str, str], bool] = field(default=lambda level, message: True)
    log: StepLogger = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.log = StepLogger(self.record_log, self.step_name)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.step_name}"

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the attempt is taken away (reclaimed or cancelled)."""
        if self.cancelled.wait(seconds):
            raise TransientToolError("attempt taken away while sleeping")


Handler = Callable[[StepContext], dict]


def tool_names() -> set[str]:
    """The tools this process can run: the built-ins and the users' tools it has imported."""
    from engine.tools.builtin import TOOLS
    from engine.tools.registry import registered_tools
    return set(TOOLS) | set(registered_tools())


def run_step(kind: str, tool: str | None, ctx: StepContext) -> dict:
    """Apply the chaos knobs of the input, then run the tool or the LLM call. An expanded map step
    runs no handler: it collects its children's outputs (its chaos knobs were meant for them)."""
    if kind == "map":
        from engine.primitives import collect_map_outputs
        return collect_map_outputs(ctx.step_name, ctx.parents)
    if kind == "wait":  # a redriven wait would get here; waits are resolved by signals only
        raise PermanentError("a wait step is resolved by a signal, never by a worker")
    apply_chaos(ctx)
    if kind == "llm_call":
        from engine.tools.llm import llm_call
        return llm_call(ctx)
    from engine.tools.builtin import TOOLS
    if tool in TOOLS:
        return TOOLS[tool](ctx)
    from engine.tools.registry import get_tool, run_handler
    spec = get_tool(tool or "")
    if spec is None:  # the claim only hands out offered tools, so this is a routing bug: say so
        raise PermanentError(f"this worker does not offer tool {tool!r}")
    return run_handler(spec, ctx)


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
