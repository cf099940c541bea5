"""Retry policy: exponential backoff with jitter, and whether an attempt is the last one."""
from __future__ import annotations

import random


def backoff_delay(attempt: int, base_seconds: float, max_seconds: float,
                  rng: random.Random | None = None) -> float:
    """Delay before the attempt after `attempt` (1-based): base·2^(attempt-1), capped, jittered.

    Half of the delay is fixed and half random ("equal jitter"), so retries of many steps that
    failed together spread out without any of them retrying almost at once.
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    ceiling = min(max_seconds, base_seconds * (2 ** min(attempt - 1, 32)))
    rng = rng or random
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def is_last_attempt(attempt: int, attempt_limit: int) -> bool:
    return attempt >= attempt_limit
