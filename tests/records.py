"""Factories for the model records (`engine.model`) with state-aware defaults, for tests that need a
`Run`, a `Step` or an `Event` without a database (the checker, the pictures, the wire format)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from engine.model import Event, Run, RunStatus, Step, StepStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN_ID = UUID("00000000-0000-4000-8000-000000000001")


def step_record(step_id: int, name: str | None = None, status: StepStatus = StepStatus.PENDING,
                attempt: int = 0, depends_on: tuple[str, ...] | list[str] = (), **fields: Any) -> Step:
    """A step; a succeeded one gets an output (the checker requires it) unless one is given."""
    name = name or f"tool_call.s{step_id}"
    values: dict[str, Any] = {
        "id": step_id, "run_id": RUN_ID, "name": name, "kind": name.split(".")[0], "tool": None,
        "status": StepStatus(status), "attempt": attempt, "max_attempts": 5, "attempt_limit": 5,
        "depends_on": tuple(depends_on), "input": {}, "output": {"ok": True} if status == StepStatus.SUCCEEDED else None,
        "error": None, "reclaims": 0, "worker": None, "run_at": T0, "started_at": None, "finished_at": None,
    }
    values.update(fields)
    return Step(**values)


def run_record(*steps: Step, status: RunStatus = RunStatus.RUNNING, **fields: Any) -> Run:
    values: dict[str, Any] = {"id": RUN_ID, "goal": "a test run", "status": RunStatus(status),
                              "idempotency_key": None, "created_at": T0,
                              "finished_at": None if status == RunStatus.RUNNING else T0 + timedelta(seconds=10),
                              "steps": tuple(steps)}
    values.update(fields)
    return Run(**values)


def event_record(event_id: int, kind: str, step_id: int | None = None, attempt: int | None = None,
                 detail: dict[str, Any] | None = None, at: float | None = None, worker: str | None = None,
                 run_id: UUID | None = RUN_ID) -> Event:
    """An audit event; `at` is seconds after T0 (default: the event id)."""
    return Event(id=event_id, type=kind, run_id=run_id, step_id=step_id,
                 step=None if step_id is None else f"tool_call.s{step_id}", attempt=attempt, worker=worker,
                 ts=T0 + timedelta(seconds=event_id if at is None else at), detail=detail)
