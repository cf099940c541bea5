"""The engine's model: the states a run, a step and a worker can be in, defined once.

The database stores these as text (the CHECK constraints in `migrations/` list the same values);
Python code compares against these members, never against string literals. `StrEnum` members are
`str`, so they pass straight into SQL parameters and JSON.
"""
from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATUSES


class StepStatus(StrEnum):
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
