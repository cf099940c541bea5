"""The wire format: model records → the JSON shapes of the HTTP API, the WebSocket stream and the
CLI (README, "Web app and API" and "CLI"). This is the only place that knows those shapes
(camelCase names, ISO 8601 dates, ids as strings), so the store, the checker and the pages work on
typed records and an API field can only change here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from engine.model import Event, Run, Step, WorkerInfo


def iso(moment: datetime | None) -> str | None:
    """A timestamp as ISO 8601 with its offset (the database's timestamptz are UTC-aware)."""
    return moment.isoformat() if moment is not None else None


def uuid_text(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def step_to_api(step: Step) -> dict[str, Any]:
    """A step inside `GET /api/runs/<id>`."""
    return {"id": step.id, "name": step.name, "status": step.status.value, "attempt": step.attempt,
            "maxAttempts": step.max_attempts, "dependsOn": list(step.depends_on), "output": step.output,
            "error": step.error}


def run_to_api(run: Run) -> dict[str, Any]:
    """`GET /api/runs/<id>` and `python -m engine status`."""
    return {"id": str(run.id), "goal": run.goal, "status": run.status.value,
            "steps": [step_to_api(step) for step in run.steps]}


def event_to_api(event: Event) -> dict[str, Any]:
    """One event of `GET /api/runs/<id>/events`, `WS /ws/<run_id>` and `python -m engine events`."""
    return {"id": event.id, "type": event.type, "runId": uuid_text(event.run_id), "stepId": event.step_id,
            "step": event.step, "attempt": event.attempt, "worker": event.worker, "ts": iso(event.ts),
            "detail": event.detail}


def worker_to_api(worker: WorkerInfo) -> dict[str, Any]:
    """One worker of `GET /api/workers`."""
    return {"name": worker.name, "pid": worker.pid, "host": worker.host, "status": worker.status.value,
            "lastSeen": iso(worker.last_seen), "running": list(worker.running)}
