"""What a worker adds for LLM steps: a small pool of connections that handlers use for streamed
text, usage and provider pauses (never the claim or record connections, which must not wait on a
handler), the configured provider limits, and the claim of limited steps with its wait hint."""
from __future__ import annotations

import logging
import time

import psycopg
from psycopg_pool import ConnectionPool

from engine.config import Settings
from engine.errors import RetryableConflict
from engine.store import make_pool
from engine.store.provider_limits import limits_configure, parse_limits, step_claim_limited
from engine.store.steps import ClaimedStep

log = logging.getLogger("worker")

STREAM_POOL_SIZE = 4  # flushes are short transactions; a few connections serve every slot


class LlmSupport:
    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.limits = parse_limits(settings.llm_limits)  # a malformed LLM_LIMITS stops the worker at once
        self.pool: ConnectionPool = make_pool(settings.database_url, min_size=0, max_size=STREAM_POOL_SIZE,
                                              application_name=f"{name}:llm")
        self.wake_at: float | None = None  # monotonic time a waiting limited step may be admitted

    def configure(self, conn: psycopg.Connection) -> None:
        if self.limits:
            limits_configure(conn, self.limits)
            log.info("provider limits: %s", ", ".join(sorted(self.limits)))

    def claim(self, conn: psycopg.Connection, worker: str, worker_id: int, slots: int,
              tools: list[str] | None = None) -> list[ClaimedStep]:
        """Claim limited steps (LLM steps, steps with a limitKey) within their limits and budgets;
        only of the `tools` this worker offers, like the fast claim."""
        try:
            result = step_claim_limited(conn, worker, worker_id, slots, self.settings.lease_seconds,
                                        self.settings.limit_window_seconds, self.settings.max_parent_bytes,
                                        self.settings.max_running_steps_per_client, tools)
        except RetryableConflict:
            log.info("deadlock while claiming limited steps; the next loop tries again")
            return []
        self.wake_at = None if result.wait_seconds is None else time.monotonic() + result.wait_seconds
        return result.steps

    def wait_seconds(self, default: float) -> float:
        """How long an idle claim loop may sleep without missing a limited step's admission."""
        if self.wake_at is None:
            return default
        return min(default, max(0.005, self.wake_at - time.monotonic()))

    def close(self) -> None:
        self.pool.close()
