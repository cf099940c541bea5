"""The engine's exceptions. Driver errors are translated into these in one place,
`engine/store/errors.py`."""
from __future__ import annotations


class EngineError(Exception):
    """The engine could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidRun(EngineError):
    """The run is invalid."""


class TooLarge(InvalidRun):
    """The run is larger than the configured limits."""


class NotFound(EngineError):
    """No such run or step."""


class Conflict(EngineError):
    """The request conflicts with the current state."""


class RateLimited(EngineError):
    """Too many requests; try again later."""

    def __init__(self, message: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(EngineError):
    """The database is unavailable."""


class RetryableConflict(EngineError):
    """The transaction lost a race that is nobody's fault (a deadlock, a serialization failure);
    it was rolled back and succeeds when run again."""


class PermanentError(Exception):
    """Raised by a handler: the step failed and retrying will not help; dead-letter it now."""


class RetryAfter(Exception):
    """Raised by a handler: retry this step after `seconds` (e.g. an HTTP 429 with Retry-After)."""

    def __init__(self, seconds: float, message: str = "", counts_as_attempt: bool = True) -> None:
        super().__init__(message or f"retry requested after {seconds:g}s")
        self.seconds = seconds
        # False when the provider paused the whole limit key: waiting out its pause is not a failure
        # of this step, so the attempt is given back (it never dead-letters the step).
        self.counts_as_attempt = counts_as_attempt
