"""The registry of users' tools: the `@tool` decorator, loading `TOOL_MODULES`, and the defaults a
tool declares.

A worker imports the modules named by `TOOL_MODULES` / `--tools` before it connects to Postgres, so
a module that fails to import stops the process before it registers: never a half-registered
worker. The registry is process-wide (module import registers as a side effect, as Flask's routes
and pytest's fixtures do); the built-in tools are not in it and cannot be replaced.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import os
import re
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.dag import MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT_SECONDS
from engine.tools.builtin import TOOLS as BUILTIN_TOOLS

TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
BUILTIN_TOOL_NAMES = frozenset(BUILTIN_TOOLS)  # every worker offers these; a user's tool cannot take their names
# While an async handler runs, how often its event loop looks at the attempt's `cancelled` event
# (a threading.Event has no callback to wake a loop; 50 ms is far below any lease).
ASYNC_CANCEL_POLL_SECONDS = 0.05


class ToolLoadError(Exception):
    """A tool module could not be loaded."""


@dataclass(frozen=True)
class ToolDefaults:
    """What `@tool(...)` declared; None leaves the engine's setting in force. Stored in Postgres when
    a worker registers, and applied at submission to steps that do not set their own."""

    max_attempts: int | None = None
    timeout_seconds: float | None = None
    backoff_base: float | None = None
    backoff_max: float | None = None

    def step_fields(self) -> dict[str, Any]:
        """The defaults as step fields of the run JSON (`maxAttempts`, `timeoutSeconds`, `backoff`)."""
        fields: dict[str, Any] = {}
        if self.max_attempts is not None:
            fields["maxAttempts"] = self.max_attempts
        if self.timeout_seconds is not None:
            fields["timeoutSeconds"] = self.timeout_seconds
        backoff = {k: v for k, v in (("baseSeconds", self.backoff_base), ("maxSeconds", self.backoff_max))
                   if v is not None}
        if backoff:
            fields["backoff"] = backoff
        return fields


@dataclass(frozen=True)
class ToolSpec:
    name: str
    handler: Callable[..., Any]
    defaults: ToolDefaults
    module: str

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


_REGISTRY: dict[str, ToolSpec] = {}


def tool(name: str, *, max_attempts: int | None = None, timeout_seconds: float | None = None,
         backoff: Mapping[str, float] | tuple[float, float] | None = None) -> Callable[[Callable], Callable]:
    """Register `fn(ctx) -> dict` (or `async def fn(ctx) -> dict`) as the tool `name`.

    A step `{"name": "tool_call.x", "input": {"tool": name, ...}}` runs it on a worker that imported
    the module. `max_attempts`, `timeout_seconds` and `backoff` (`(base, max)` seconds, or
    `{"baseSeconds", "maxSeconds"}`) are the defaults for steps that do not set their own. Raise
    `PermanentError` to dead-letter the step at once, `RetryAfter(seconds)` to retry after a given
    delay; any other exception is retried with backoff. The function is returned unchanged.
    """
    defaults = _check_defaults(name, max_attempts, timeout_seconds, backoff)

    def register(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"@tool({name!r}) must decorate a function")
        existing = _REGISTRY.get(name)
        module = getattr(fn, "__module__", "?")
        if existing is not None and (existing.module, existing.handler.__qualname__) != (module, fn.__qualname__):
            raise ValueError(f"tool {name!r} is registered twice: by {existing.module}.{existing.handler.__qualname__}"
                             f" and by {module}.{fn.__qualname__}")
        _REGISTRY[name] = ToolSpec(name, fn, defaults, module)
        return fn
    return register


def _check_defaults(name: str, max_attempts: int | None, timeout_seconds: float | None,
                    backoff: Mapping[str, float] | tuple[float, float] | None) -> ToolDefaults:
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise ValueError(f"tool name {name!r} must start with a letter and use letters, digits, _ . or - (at most 64)")
    if name in BUILTIN_TOOL_NAMES:
        raise ValueError(f"tool name {name!r} is a built-in tool; choose another name")
    if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
                                     or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT):
        raise ValueError(f"tool {name!r}: max_attempts must be an integer between 1 and {MAX_ATTEMPTS_LIMIT}")
    if timeout_seconds is not None and not 0 < float(timeout_seconds) <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"tool {name!r}: timeout_seconds must be between 0 and {MAX_TIMEOUT_SECONDS:g}")
    base = cap = None
    if backoff is not None:
        if isinstance(backoff, Mapping):
            base, cap = backoff.get("baseSeconds"), backoff.get("maxSeconds")
        else:
            base, cap = backoff
        if base is not None and cap is not None and not 0 <= float(base) <= float(cap):
            raise ValueError(f"tool {name!r}: backoff must be (base, max) seconds with 0 <= base <= max")
    return ToolDefaults(max_attempts, None if timeout_seconds is None else float(timeout_seconds),
                        None if base is None else float(base), None if cap is None else float(cap))


def registered_tools() -> dict[str, ToolSpec]:
    """The users' tools this process has registered, by name."""
    return dict(_REGISTRY)


def get_tool(name: str) -> ToolSpec | None:
    return _REGISTRY.get(name)


def unregister(name: str) -> None:
    """Forget a tool (tests that register throwaway tools use it)."""
    _REGISTRY.pop(name, None)


def parse_module_list(*sources: str | Iterable[str] | None) -> list[str]:
    """Module paths from comma-separated strings and lists, in order, without duplicates."""
    modules: list[str] = []
    for source in sources:
        items = source.split(",") if isinstance(source, str) else (source or [])
        for item in items:
            for part in str(item).split(","):
                if part.strip() and part.strip() not in modules:
                    modules.append(part.strip())
    return modules


def load_tool_modules(modules: Iterable[str]) -> dict[str, ToolSpec]:
    """Import each module (which registers its tools); returns the registry. The first module that
    fails to import raises ToolLoadError naming the module and the cause, with its traceback's last
    frames: the worker prints it and exits before it registers."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure of user code at import is reported the same way
            frames = "".join(traceback.format_exception(exc, limit=-3)).rstrip()
            raise ToolLoadError(f"cannot load tool module {module!r}: {type(exc).__name__}: {exc}"
                                f"{_where_looked(module, exc)}\n{frames}") from exc
    return registered_tools()


def _where_looked(module: str, exc: Exception) -> str:
    """For a module (or its package, e.g. the appliance's `user_tools` folder) that is not there at
    all, where it was looked for: a folder mounted at the wrong place is the usual cause. A missing
    dependency inside the user's module needs no such hint."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not missing or not (module == missing or module.startswith(missing + ".")):
        return ""
    return f" (looked in the working directory {os.getcwd()} and on the Python path)"


def run_handler(spec: ToolSpec, ctx: Any) -> Any:
    """Call a tool's handler in the slot's thread; an async handler gets its own event loop, and is
    cancelled when the attempt is taken away (timeout, reclaim, cancel)."""
    if not spec.is_async:
        return spec.handler(ctx)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: a worker's slot thread has no loop
        return asyncio.run(_run_async(spec.handler(ctx), ctx))
    # Called from inside a running loop (a test, a notebook): asyncio.run would refuse; use a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(_run_async(spec.handler(ctx), ctx))).result()


async def _run_async(coroutine: Awaitable[Any], ctx: Any) -> Any:
    task = asyncio.ensure_future(coroutine)
    while True:
        done, _ = await asyncio.wait({task}, timeout=ASYNC_CANCEL_POLL_SECONDS)
        if done:
            return task.result()
        if ctx.cancelled.is_set():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            raise TimeoutError("attempt taken away while the async tool was running")
