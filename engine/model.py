"""The engine's model: the states a run, a step and a worker can be in, defined once, and the typed
records the store returns (`Run`, `Step`, `RunSummary`, `Event`, `WorkerInfo`).

The database stores states as text (the CHECK constraints in `migrations/` list the same values);
Python code compares against these members, never against string literals. `StrEnum` members are
`str`, so they pass straight into SQL parameters and JSON.

The records carry Python types (UUID, datetime, enums) and snake_case names. They know nothing of
the HTTP shape: `engine/wire.py` turns them into JSON at the edge, so the API can be renamed without
touching the store, the checker or the web pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class RunStatus(StrEnum):
    """A run's status; `terminal` once completed, failed or cancelled."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATUSES


class StepStatus(StrEnum):
    """A step's status (README, "Step lifecycle")."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD_LETTER = "dead_letter"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STEP_STATUSES


class WorkerStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    LOST = "lost"


TERMINAL_RUN_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
# A dead-lettered step is terminal until a redrive re-opens it.
TERMINAL_STEP_STATUSES: frozenset[StepStatus] = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.DEAD_LETTER, StepStatus.CANCELLED})
# Steps that a worker holds or may claim: a run with any of these is not finished.
ACTIVE_STEP_STATUSES: frozenset[StepStatus] = frozenset({StepStatus.READY, StepStatus.RUNNING})


@dataclass(frozen=True)
class Step:
    """One step of a run as stored. `attempt` is the fencing token (it only grows); `attempt_limit`
    is the attempt after which the step dead-letters (a redrive raises it by `max_attempts`)."""
    id: int
    run_id: UUID
    name: str
    kind: str
    tool: str | None
    status: StepStatus
    attempt: int
    max_attempts: int
    attempt_limit: int
    depends_on: tuple[str, ...]
    input: dict[str, Any]
    output: Any
    error: str | None
    reclaims: int
    worker: str | None  # the lease owner while running, else None
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Run:
    """A run with all of its steps, in id order."""
    id: UUID
    goal: str
    status: RunStatus
    idempotency_key: str | None
    created_at: datetime
    finished_at: datetime | None
    steps: tuple[Step, ...]

    @property
    def terminal(self) -> bool:
        return self.status.terminal


@dataclass(frozen=True)
class RunSummary:
    """A run in a list: no steps, only how many there are and how many succeeded or dead-lettered."""
    id: UUID
    goal: str
    status: RunStatus
    created_at: datetime
    finished_at: datetime | None
    step_count: int
    succeeded: int
    dead: int


@dataclass(frozen=True)
class Event:
    """One row of the audit log. `type` is the event name (`step_started`, ...); `step` is the step's
    name, joined in for readers."""
    id: int
    type: str
    run_id: UUID | None
    step_id: int | None
    step: str | None
    attempt: int | None
    worker: str | None
    ts: datetime
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker incarnation (newest per name) and the ids of the steps it is running."""
    id: int
    name: str
    pid: int
    host: str
    status: WorkerStatus
    started_at: datetime
    last_seen: datetime
    seen_seconds_ago: float
    running: tuple[int, ...]


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered step with its run's goal and status (the dead-letter page)."""
    id: int
    name: str
    run_id: UUID
    goal: str
    run_status: RunStatus
    attempt: int
    reclaims: int
    error: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class QueueSnapshot:
    """Counts for the dashboard and `/metrics`. `steps` and `runs` hold every status, zeros included;
    `claimable` are ready steps whose time has come, `retrying` ready steps waiting out a backoff."""
    steps: dict[StepStatus, int]
    runs: dict[RunStatus, int]
    claimable: int
    retrying: int
    oldest_ready_seconds: float
    workers_alive: int
    last_event_id: int


# -- LLM steps (issue 12): streamed text, usage, budgets and provider limits -------------------


class StreamState(StrEnum):
    """What became of one attempt's streamed text."""
    STREAMING = "streaming"      # the attempt is running and may add more
    COMPLETE = "complete"        # its stream ended normally
    INTERRUPTED = "interrupted"  # it stopped part-way (worker killed, stream broken, step taken away)


@dataclass(frozen=True)
class StreamPart:
    """A piece of a step's streamed text: `text` starts at character `offset` of the step's stream
    (all attempts, in attempt order) and belongs to `attempt`."""
    step_id: int
    attempt: int
    offset: int
    text: str
    state: StreamState

    @property
    def end(self) -> int:
        return self.offset + len(self.text)


@dataclass(frozen=True)
class StepStream:
    """A step's streamed text from some offset on, one part per attempt (consecutive batches merged)."""
    step_id: int
    run_id: UUID
    step: str
    status: StepStatus
    attempt: int
    offset: int
    parts: tuple[StreamPart, ...]

    @property
    def end(self) -> int:
        return self.parts[-1].end if self.parts else self.offset


@dataclass(frozen=True)
class Usage:
    """Tokens and cost: of one step (all its attempts), of a run, or of a model."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    latency_ms: float = 0.0  # of the latest call
    model: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RunUsage:
    """A run's LLM usage summed in SQL, per step and in total, with its budget if it has one."""
    total: Usage
    steps: dict[int, Usage]
    budget_tokens: int | None
    budget_usd: float | None
    budget_exceeded: bool


@dataclass(frozen=True)
class ProviderLimit:
    """A named provider limit and its use now (the dashboard)."""
    key: str
    concurrency: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    running: int
    waiting: int
    window_requests: int
    window_tokens: int
    paused_seconds: float  # 0 when not paused
