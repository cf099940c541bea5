"""One context builder per partial template. A page renders its partials from these, and the live
socket re-renders the same partials from the same builders, so the two can never drift apart.

`upto` is a subscriber's horizon: event lists stop there, and the live stream sends what follows.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from app.dag_svg import blocked_steps, dag_picture, display_status
from app.llm_view import limits_context, llm_context
from app.primitives_view import collapse_map_children, primitives_context
from app.state import state
from app.timeline import NARROW, timeline_picture
from engine import store
from engine.model import Event, Run, RunStatus, Step, StepStatus, WorkerStatus
from engine.store.dashboard import dead_letters_list, queue_snapshot, step_leases, worker_events_between
from engine.store.runs import steps_by_id
from engine.store.tools import steps_waiting_for_tool
from engine.wire import waiting_reason

FEED_LENGTH = 40
RUN_LOG_LENGTH = 1000
RECENT_RUNS = 12
GONE_WORKERS_SECONDS = 600
LOGGED_WORKER_EVENTS = ("worker_kill_requested", "worker_lost")  # shown in a run's log beside its events


def limit_window_seconds() -> float:
    return state().settings.limit_window_seconds


def workers_context(conn: psycopg.Connection) -> dict[str, Any]:
    """Running workers, and those that stopped or were lost recently (a killed worker shows as lost
    until it comes back)."""
    workers = [w for w in store.workers_list(conn, include_gone=True)
               if w.status == WorkerStatus.RUNNING or w.seen_seconds_ago < GONE_WORKERS_SECONDS]
    running = steps_by_id(conn, [step_id for w in workers for step_id in w.running])
    return {"workers": [{**vars(w), "steps": [running[i] for i in w.running if i in running]} for w in workers]}


def queue_context(conn: psycopg.Connection) -> dict[str, Any]:
    """Queue counts, and the provider limits' use (shown under them)."""
    return {"queue": queue_snapshot(conn), **limits_context(conn, limit_window_seconds())}


def runs_context(conn: psycopg.Connection) -> dict[str, Any]:
    return {"runs": store.run_list(conn, limit=RECENT_RUNS)}


def feed_context(conn: psycopg.Connection, upto: int | None = None) -> dict[str, Any]:
    events = store.events_recent(conn, FEED_LENGTH + 50)
    kept = [e for e in events if upto is None or e.id <= upto][-FEED_LENGTH:]
    return {"feed": list(reversed(kept))}  # newest first


def dashboard_context(conn: psycopg.Connection, upto: int | None = None) -> dict[str, Any]:
    return {**workers_context(conn), **queue_context(conn), **runs_context(conn), **feed_context(conn, upto)}


def run_events(conn: psycopg.Connection, run_id: UUID | str, upto: int | None = None,
               after: int = 0) -> list[Event]:
    """The run's events after `after` up to `upto` (no limit when None), oldest first."""
    events: list[Event] = []
    while True:
        page = store.events_after(conn, run_id, after, limit=1000)
        events.extend(e for e in page if upto is None or e.id <= upto)
        if len(page) < 1000 or (upto is not None and page[-1].id > upto):
            return events
        after = page[-1].id


def run_context(conn: psycopg.Connection, run_id: UUID | str, upto: int | None = None) -> dict[str, Any]:
    """Everything the run page shows: header, DAG, timeline, steps, and the event log (the run's
    events, with the kills and losses of the workers that ran it in their place)."""
    run = store.run_get(conn, run_id)
    events = run_events(conn, run_id, upto)
    pictures = run_picture_context(conn, run, events)
    worker_events = [e for e in pictures["worker_events"] if upto is None or e.id <= upto]
    log = sorted([*events, *worker_events], key=lambda e: e.id)
    return {**pictures, "log": log[-RUN_LOG_LENGTH:]}


def run_picture_context(conn: psycopg.Connection, run: Run, events: list[Event]) -> dict[str, Any]:
    """The parts of the run page that are redrawn whole on every change."""
    now = datetime.now(UTC)
    lanes = sorted({e.worker for e in events if e.type == "step_started" and e.worker})
    markers = worker_events_between(conn, lanes, run.created_at, run.finished_at or now)
    last_worker = {e.step_id: e.worker for e in events if e.type == "step_started"}
    blocked = blocked_steps(run.steps)
    waiting = steps_waiting_for_tool(conn, run.id) if run.status == RunStatus.RUNNING else {}
    steps = [{**vars(s), "display_status": display_status(s, blocked, run.status), "seconds": _seconds(s, now),
              "worker": s.worker or last_worker.get(s.id),
              "waiting": waiting_reason(waiting[s.id]) if s.id in waiting else None} for s in run.steps]
    counts: dict[str, int] = {}
    for step in steps:
        counts[step["display_status"]] = counts.get(step["display_status"], 0) + 1
    lease = {"lease_seconds": state().settings.lease_seconds, "leases": step_leases(conn, run.id)}
    return {"run": {**vars(run), "steps": steps, "counts": counts, "terminal": run.terminal},
            "dag": dag_picture(collapse_map_children(run.steps), run_status=run.status),
            "dag_narrow": dag_picture(collapse_map_children(run.steps), vertical=True, run_status=run.status),
            "timeline": timeline_picture(run, events, markers, now, **lease),
            "timeline_narrow": timeline_picture(run, events, markers, now, NARROW, **lease),
            "worker_events": [e for e in markers if e.type in LOGGED_WORKER_EVENTS],
            **llm_context(conn, run), **primitives_context(conn, run)}


def _seconds(step: Step, now: datetime) -> float | None:
    """How long the step's latest attempt took (or has been running)."""
    if step.started_at is None:
        return None
    if step.status == StepStatus.RUNNING:
        return (now - step.started_at).total_seconds()
    if step.finished_at is not None:
        return max(0.0, (step.finished_at - step.started_at).total_seconds())
    return None


def dead_letters_context(conn: psycopg.Connection) -> dict[str, Any]:
    return {"dead_letters": dead_letters_list(conn)}
