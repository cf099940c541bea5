"""Ids from user input. A string that is not a UUID names no run, so it is a `NotFound`, not a crash."""
from __future__ import annotations

from uuid import UUID

from engine.errors import NotFound


def as_run_id(value: UUID | str) -> UUID:
    """A run id from user input; anything that is not a UUID is simply not a run."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"no run {str(value)[:80]}") from None
