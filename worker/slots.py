"""Running one claimed step in a slot: build its context, call the handler with the chaos knobs,
and turn whatever happened into a `StepResult` (with the retry decision)."""
from __future__ import annotations

import json
import random
import traceback
from collections.abc import Callable

from engine.config import Settings
from engine.errors import PermanentError, RetryAfter, StoreUnavailable
from engine.retry import backoff_delay, is_last_attempt
from engine.store import ClaimedStep, StepResult
from engine.tools import StepContext, run_step
from engine.tools.llm_stream import ConnectionSource

MAX_ERROR_CHARS = 2000


def execute_step(step: ClaimedStep, ctx: StepContext) -> StepResult:
    """Run the handler; never raises (except for the process-ending crash knob)."""
    settings = ctx.settings
    if step.parents is None:  # the claim left them in the database: too big to load (README: memory)
        return failure(step, f"permanent: the parents' outputs total {step.parents_bytes} bytes, more than "
                             f"MAX_PARENT_BYTES ({settings.max_parent_bytes})", permanent=True)
    try:
        output = run_step(step.kind, step.tool, ctx)
        encoded = json.dumps(output)
        if len(encoded) > settings.max_step_output_bytes:
            raise PermanentError(f"the output is {len(encoded)} bytes, more than MAX_STEP_OUTPUT_BYTES "
                                 f"({settings.max_step_output_bytes})")
        if step.run_output_bytes + len(encoded) > settings.max_run_output_bytes:
            raise PermanentError(f"the run's outputs would total {step.run_output_bytes + len(encoded)} bytes, more "
                                 f"than MAX_RUN_OUTPUT_BYTES ({settings.max_run_output_bytes})")
        return StepResult(step.id, step.attempt, ok=True, output_json=encoded, run_id=step.run_id,
                          feeds_map=step.feeds_map)
    except StoreUnavailable as exc:  # the engine's database, reached through the tool's connection
        return StepResult(step.id, step.attempt, ok=False, error=str(exc)[:MAX_ERROR_CHARS], give_back=True,
                          run_id=step.run_id)
    except PermanentError as exc:
        return failure(step, f"permanent: {exc}", permanent=True)
    except RetryAfter as exc:
        if not exc.counts_as_attempt:  # a provider pause: the attempt was given back, never dead-letter
            return StepResult(step.id, step.attempt, ok=False, error=str(exc)[:MAX_ERROR_CHARS],
                              delay_seconds=exc.seconds, run_id=step.run_id)
        return failure(step, str(exc), delay=exc.seconds)
    except (TypeError, ValueError) as exc:
        if "JSON" in str(exc) or "serializable" in str(exc):
            return failure(step, f"output is not JSON: {exc}", permanent=True)
        return failure(step, _describe(exc))
    except Exception as exc:  # noqa: BLE001 - any handler error is a transient failure by default
        return failure(step, _describe(exc))


def failure(step: ClaimedStep, error: str, permanent: bool = False, delay: float | None = None,
            jitter: Callable[[int, float, float], float] = backoff_delay) -> StepResult:
    """The result of a failed attempt: dead-letter if permanent or out of attempts, else retry later."""
    dead = permanent or is_last_attempt(step.attempt, step.attempt_limit)
    if delay is None:
        delay = 0.0 if dead else jitter(step.attempt, step.backoff_base, step.backoff_max)
    return StepResult(step.id, step.attempt, ok=False, error=error[:MAX_ERROR_CHARS],
                      delay_seconds=delay, dead_letter=dead, run_id=step.run_id)


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {where[0].name}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def make_context(step: ClaimedStep, settings: Settings, record_notification: Callable[[str], bool],
                 rng: random.Random, connections: ConnectionSource | None = None,
                 record_log: Callable[[str, str], bool] | None = None) -> StepContext:
    return StepContext(run_id=step.run_id, step_name=step.name, input=step.input or {},
                       parents=step.parents or {}, attempt=step.attempt, settings=settings,
                       record_notification=record_notification, rng=rng, step_id=step.id,
                       limit_key=step.limit_key, connections=connections,
                       record_log=record_log or (lambda level, message: False))


def chaos_rng(settings: Settings, worker_name: str) -> random.Random:
    """The worker's generator for chaos draws (`failureRate`): seeded by CHAOS_SEED and the worker's
    name when CHAOS_SEED is set, so a soak's failures can be replayed; unseeded otherwise. Slots
    draw from it concurrently, so the sequence per worker is reproduced, not which step gets which
    draw when steps run in parallel."""
    return random.Random(f"{settings.chaos_seed}:{worker_name}") if settings.chaos_seed else random.Random()
