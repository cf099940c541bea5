"""Jinja filters for the templates: short ids, times, durations, truncated JSON, and one line of
text per audit event. Everything returns plain strings: autoescaping does the rest."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Flask

from engine.model import Event
from engine.primitives import public_sender

JSON_PREVIEW_CHARS = 1500


def install(app: Flask) -> None:
    app.jinja_env.filters.update(public_sender=public_sender, short_id=short_id, clock=clock, ago=ago, duration=duration,
                                 pretty_json=pretty_json, event_text=event_text, step_label=step_label,
                                 event_family=event_family)


def short_id(value: object) -> str:
    return str(value)[:8]


def clock(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone().strftime("%H:%M:%S")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def pretty_json(value: Any, limit: int = JSON_PREVIEW_CHARS) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "\n… (truncated)"


EVENT_FAMILIES = {
    "ok": {"step_succeeded", "run_completed", "worker_started"},
    "bad": {"step_dead_lettered", "run_failed", "worker_lost", "worker_kill_requested", "budget_exceeded"},
    "warn": {"step_retry_scheduled", "step_reclaimed", "step_result_discarded", "step_redriven", "limit_paused"},
    "muted": {"step_cancelled", "run_cancelled", "worker_stopped"},
}
EVENT_FAMILIES["ok"] |= {"step_signalled", "step_reused"}
EVENT_FAMILIES["bad"] |= {"run_deadline_exceeded"}
EVENT_FAMILIES["warn"] |= {"step_waiting", "step_timed_out", "step_signal_refused"}


def event_family(event_type: str) -> str:
    """ok / bad / warn / muted / info: the colour of an event in the logs."""
    return next((family for family, types in EVENT_FAMILIES.items() if event_type in types), "info")


def step_label(name: str | None) -> str:
    return (name or "").split(".", 1)[-1]


def event_text(event: Event) -> str:
    """What happened, in a few words, beyond the event's type."""
    detail = event.detail or {}
    if event.type == "run_created":
        return f"{detail.get('steps', '?')} steps"
    if event.type == "step_retry_scheduled":
        return f"{detail.get('error', '')} — retry in {detail.get('delaySeconds', '?')}s"
    if event.type in ("step_dead_lettered", "step_result_discarded") and detail.get("error"):
        return str(detail["error"])
    if event.type == "step_result_discarded":
        return f"{detail.get('outcome', '')} result ignored: step is now {detail.get('currentStatus', '?')}"
    if event.type == "step_reclaimed":
        return f"{detail.get('reason', '')}"
    if event.type == "step_redriven":
        return "run re-opened" if detail.get("runReopened") else ""
    if event.type == "run_failed" and detail.get("reason") == "deadline":
        return "deadline passed"
    if event.type == "run_failed" and detail.get("reason"):
        return str(detail["reason"]).replace("_", " ")
    if event.type == "run_failed":
        return f"{detail.get('deadLetters', '?')} dead-lettered"
    primitive = primitive_event_text(event.type, detail)
    if primitive is not None:
        return primitive
    if event.type == "budget_exceeded":
        budget, spent = detail.get("budget") or {}, detail.get("spent") or {}
        return (f"spent {spent.get('tokens')} tokens / ${spent.get('usd')} of budget "
                f"{budget.get('tokens') or '-'} tokens / ${budget.get('usd') or '-'}")
    if event.type == "limit_paused":
        return f"{detail.get('key')} paused {detail.get('retryAfterSeconds')}s (429 Retry-After)"
    if event.type == "worker_kill_requested":
        return f"pid {detail.get('pid')} via {detail.get('via')}"
    if event.type == "step_log":  # a tool's own words: shown as text, like an LLM's (autoescaped)
        return f"{detail.get('level', 'info')}: {detail.get('message', '')}"
    if event.type in ("worker_started", "worker_lost"):
        return f"pid {detail['pid']}" if detail.get("pid") else ""
    return ""


def primitive_event_text(kind: str, detail: dict[str, Any]) -> str | None:
    """The few words of the agent primitives' events; None for any other event."""
    texts = {
        "steps_mapped": lambda: f"{detail.get('count', '?')} child step(s) created",
        "step_waiting": lambda: "waiting for a signal" + (
            " until " + clock(datetime.fromisoformat(detail["expiresAt"])) if detail.get("expiresAt") else ""),
        "step_signalled": lambda: f"signal from {detail.get('sender') or 'unknown'}: {detail.get('status', '')}",
        "step_signal_refused": lambda: f"signal from {detail.get('sender') or 'unknown'} refused: already resolved",
        "step_timed_out": lambda: f"no signal in time: {detail.get('onTimeout', '')}",
        "step_reused": lambda: f"output copied from run {str(detail.get('sourceRunId', ''))[:8]}",
        "run_rerun": lambda: f"re-run of {str(detail.get('sourceRunId', ''))[:8]} from {detail.get('fromStep', '')}",
        "run_deadline_exceeded": lambda: f"{detail.get('stepsCancelled', 0)} step(s) cancelled",
    }
    return texts[kind]() if kind in texts else None
