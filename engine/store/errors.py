"""The store's error seam: driver errors become the engine's own exceptions here, by SQLSTATE, and
nowhere else. Callers outside `engine/store/` catch `StoreUnavailable` (reconnect and retry) or
`RetryableConflict` (run the transaction again) and never see psycopg's classes.

Store functions that run on a caller's connection are wrapped with `@translated`; a block of
several calls (a web request on a pooled connection) uses `with driver_errors():`. Errors that are
neither (a constraint the code did not expect, a bug) pass through unchanged: they must be loud.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import psycopg

from engine.errors import EngineError, RetryableConflict, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

# SQLSTATE classes meaning "this connection or server is gone": 08 connection exception,
# 57P operator intervention (admin/crash shutdown, cannot connect now), 53 insufficient resources.
_UNAVAILABLE_PREFIXES = ("08", "57P", "53")
# Conflicts that are nobody's fault and succeed when the transaction is simply run again.
_RETRYABLE = {"40P01": "deadlock detected", "40001": "serialization failure"}


def translate(exc: psycopg.Error) -> EngineError | None:
    """The engine exception for a driver error, or None when it is not one we translate."""
    state = exc.sqlstate or ""
    if state in _RETRYABLE:
        return RetryableConflict(f"{_RETRYABLE[state]} ({state})")
    if state.startswith(_UNAVAILABLE_PREFIXES) or (
            not state and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))):
        # No SQLSTATE: the client lost the connection (server closed it, refused, pool timeout).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(f"the database is unavailable ({first})")
    return None


@contextmanager
def driver_errors() -> Iterator[None]:
    """Translate driver errors raised inside the block."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """Translate driver errors raised by a store function (a plain try: free on the hot path)."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except psycopg.Error as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc
    return wrapper
