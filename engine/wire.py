"""The wire format: model records → the JSON shapes of the HTTP API, the WebSocket stream and the
CLI (README, "Web app and API" and "CLI"). This is the only place that knows those shapes
(camelCase names, ISO 8601 dates, ids as strings), so the store, the checker and the pages work on
typed records and an API field can only change here.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.model import (
    Event,
    ProviderLimit,
    Run,
    RunUsage,
    SignalOutcome,
    Step,
    StepStream,
    StreamPart,
    Usage,
    WorkerInfo,
)


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


def run_to_api(run: Run, usage: RunUsage | None = None, waiting: Mapping[int, str] | None = None) -> dict[str, Any]:
    """`GET /api/runs/<id>` and `python -m engine status`. A re-run names its source
    (`sourceRunId`); a run ended by something other than its steps says why (`endReason`); with
    `usage`, each LLM step gets a `usage` and the run its `usage` totals and `budget`; `waiting`
    (step id -> tool no live worker offers) gives only those steps a `waiting` reason."""
    body: dict[str, Any] = {"id": str(run.id), "goal": run.goal, "status": run.status.value,
                            "steps": [step_to_api(step) for step in run.steps]}
    if run.source_run_id is not None:
        body["sourceRunId"] = str(run.source_run_id)
    if run.end_reason is not None:
        body["endReason"] = run.end_reason
    for step in body["steps"]:
        if waiting and step["id"] in waiting:
            step["waiting"] = waiting_reason(waiting[step["id"]])
    if usage is not None:
        for step in body["steps"]:
            if step["id"] in usage.steps:
                step["usage"] = usage_to_api(usage.steps[step["id"]])
        body["usage"] = usage_to_api(usage.total)
        body["budget"] = budget_to_api(usage)
    return body


def signal_to_api(run_id: UUID | str, step_name: str, outcome: SignalOutcome) -> dict[str, Any]:
    """The answer to `POST /api/runs/<id>/signals/<step>` and `python -m engine signal`."""
    return {"runId": str(run_id), "step": step_name, "stepId": outcome.step_id, "status": outcome.status.value,
            "signalId": outcome.signal_id}


def waiting_reason(tool: str) -> str:
    """What the API and the run page say about a ready step whose tool no live worker offers."""
    return f"no live worker offers tool `{tool}`"


def usage_to_api(usage: Usage) -> dict[str, Any]:
    """Tokens, cost (USD), calls (attempts that got an answer), model and latency of the latest call."""
    return {"promptTokens": usage.prompt_tokens, "completionTokens": usage.completion_tokens,
            "totalTokens": usage.tokens, "costUsd": round(usage.cost_usd, 8), "calls": usage.calls,
            "model": usage.model, "latencyMs": round(usage.latency_ms, 1)}


def budget_to_api(usage: RunUsage) -> dict[str, Any] | None:
    if usage.budget_tokens is None and usage.budget_usd is None:
        return None
    return {"tokens": usage.budget_tokens, "usd": usage.budget_usd, "exceeded": usage.budget_exceeded}


def stream_to_api(stream: StepStream) -> dict[str, Any]:
    """`GET /api/steps/<id>/stream?offset=N`: the text from offset N, one part per attempt."""
    return {"stepId": stream.step_id, "runId": str(stream.run_id), "step": stream.step,
            "status": stream.status.value, "attempt": stream.attempt, "offset": stream.offset,
            "nextOffset": stream.end, "parts": [part_to_api(p) for p in stream.parts],
            "text": "".join(p.text for p in stream.parts)}


def part_to_api(part: StreamPart) -> dict[str, Any]:
    return {"attempt": part.attempt, "offset": part.offset, "text": part.text, "state": part.state.value}


def chunk_to_ws(stream: StepStream, part: StreamPart) -> dict[str, Any]:
    """An `llm_chunk` message of `WS /ws/<run_id>`: `text` starts at character `offset` of the
    step's stream; a client keeps `offset + len(text)` per step to resume with `?streams=`."""
    return {"type": "llm_chunk", "runId": str(stream.run_id), "stepId": stream.step_id, "step": stream.step,
            **part_to_api(part)}


def limit_to_api(limit: ProviderLimit) -> dict[str, Any]:
    return {"key": limit.key, "concurrency": limit.concurrency, "requestsPerMinute": limit.requests_per_minute,
            "tokensPerMinute": limit.tokens_per_minute, "running": limit.running, "waiting": limit.waiting,
            "windowRequests": limit.window_requests, "windowTokens": limit.window_tokens,
            "pausedSeconds": round(limit.paused_seconds, 3)}


def event_to_api(event: Event) -> dict[str, Any]:
    """One event of `GET /api/runs/<id>/events`, `WS /ws/<run_id>` and `python -m engine events`."""
    return {"id": event.id, "type": event.type, "runId": uuid_text(event.run_id), "stepId": event.step_id,
            "step": event.step, "attempt": event.attempt, "worker": event.worker, "ts": iso(event.ts),
            "detail": event.detail}


def worker_to_api(worker: WorkerInfo) -> dict[str, Any]:
    """One worker of `GET /api/workers`."""
    return {"name": worker.name, "pid": worker.pid, "host": worker.host, "status": worker.status.value,
            "lastSeen": iso(worker.last_seen), "running": list(worker.running)}
