"""The engine's model: the states a run, a step and a worker can be in, defined once, and the typed
records the store returns (`Run`, `Step`, `RunSummary`, `Event`, `WorkerInfo`, and the agent
primitives' `Wait`, `Signal`, `RunLinks`, `SourceRun`).

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
    WAITING = "waiting"  # a wait step waiting for its signal: holds no slot, thread or connection

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
# Steps that can still move on by themselves: a run with any of these is not finished. A waiting
# step holds no worker, but its signal or its timeout will resolve it.
ACTIVE_STEP_STATUSES: frozenset[StepStatus] = frozenset({StepStatus.READY, StepStatus.RUNNING, StepStatus.WAITING})


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
    source_run_id: UUID | None = None  # the run this one re-runs (agent primitives)
    deadline_at: datetime | None = None  # from `deadlineSeconds`
    end_reason: str | None = None  # why it ended, when not by its steps (`deadline`)

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


# Agent primitives (README, "Agent primitives").

@dataclass(frozen=True)
class Wait:
    """A wait step as the run page shows it: its prompt and the time left by the database's clock."""
    step_id: int
    name: str
    status: StepStatus
    prompt: str
    expires_at: datetime | None
    seconds_left: float | None  # at the time of the read; None when it has no timeout or is resolved
    on_timeout: str | None
    on_reject: str | None


@dataclass(frozen=True)
class Signal:
    """A signal sent to a wait step, accepted or refused. `sender` is the full client address (the
    `signals` table is the audit of who sent what; public views mask it)."""
    id: int
    step_name: str
    payload: dict[str, Any]
    sender: str | None
    accepted: bool
    created_at: datetime


@dataclass(frozen=True)
class SignalOutcome:
    """An accepted signal: the wait's status after it (succeeded, or dead_letter when rejected)."""
    step_id: int
    status: StepStatus
    signal_id: int


@dataclass(frozen=True)
class RunLinks:
    """A run's place among re-runs, its deadline and why it ended (the run page's header)."""
    source_run_id: UUID | None
    reruns: tuple[UUID, ...]
    deadline_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True)
class SourceStep:
    """A step of a run as it was submitted (a map step's children left out), for a re-run."""
    name: str
    input: dict[str, Any]
    depends_on: tuple[str, ...]
    max_attempts: int
    timeout_seconds: float
    backoff_base: float
    backoff_max: float
    delay_seconds: float
    map_source: str | None
    max_items: int | None
    status: StepStatus
    output: Any
    limit_key: str | None = None  # a map step's is read from its children (they took it over)


@dataclass(frozen=True)
class SourceRun:
    """A finished run as a re-run reads it: its steps as submitted, with their outcomes."""
    id: UUID
    goal: str
    status: RunStatus
    deadline_seconds: float | None
    steps: tuple[SourceStep, ...]
    budget: dict[str, Any] | None = None  # as submitted: {"tokens": N, "usd": x}


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
