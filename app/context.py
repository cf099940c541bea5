"""One context builder per partial template. A page renders its partials from these, and the live
socket re-renders the same partials from the same builders, so the two can never drift apart.

`upto` is a subscriber's horizon: event lists stop there, and the live stream sends what follows.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from app.dag_svg import dag_picture, display_status
from app.timeline import timeline_picture
from engine import store
from engine.store import Event
from engine.store.dashboard import dead_letters_list, queue_snapshot, steps_brief, worker_events_between
from engine.store.tools import steps_waiting_for_tool, waiting_reason

FEED_LENGTH = 40
RUN_LOG_LENGTH = 1000
RECENT_RUNS = 12
TERMINAL_RUN = ("completed", "failed", "cancelled")
GONE_WORKERS_SECONDS = 600


def workers_context(conn: psycopg.Connection) -> dict[str, Any]:
    """Running workers, and those that stopped or were lost recently (a killed worker shows as lost
    until it comes back)."""
    workers = [w for w in store.workers_list(conn, include_gone=True)
               if w["status"] == "running" or w["seen_seconds_ago"] < GONE_WORKERS_SECONDS]
    running = steps_brief(conn, [step_id for w in workers for step_id in w["running"]])
    return {"workers": [{**w, "steps": [running[i] for i in w["running"] if i in running]} for w in workers]}


def queue_context(conn: psycopg.Connection) -> dict[str, Any]:
    return {"queue": queue_snapshot(conn)}


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
    """Everything the run page shows: header, DAG, timeline, steps, and the event log."""
    run = store.run_get(conn, run_id)
    events = run_events(conn, run_id, upto)
    return {**run_picture_context(conn, run, events), "log": events[-RUN_LOG_LENGTH:]}


def run_picture_context(conn: psycopg.Connection, run: dict[str, Any], events: list[Event]) -> dict[str, Any]:
    """The parts of the run page that are redrawn whole on every change."""
    now = datetime.now(UTC)
    lanes = sorted({e.worker for e in events if e.type == "step_started" and e.worker})
    start = datetime.fromisoformat(run["createdAt"])
    end = datetime.fromisoformat(run["finishedAt"]) if run["finishedAt"] else now
    markers = worker_events_between(conn, lanes, start, end)
    last_worker = {e.step_id: e.worker for e in events if e.type == "step_started"}
    waiting = steps_waiting_for_tool(conn, run["id"]) if run["status"] == "running" else {}
    steps = [{**s, "display_status": display_status(s), "seconds": _seconds(s, now),
              "worker": s["worker"] or last_worker.get(s["id"]),
              "waiting": waiting_reason(waiting[s["id"]]) if s["id"] in waiting else None} for s in run["steps"]]
    counts: dict[str, int] = {}
    for step in steps:
        counts[step["display_status"]] = counts.get(step["display_status"], 0) + 1
    return {"run": {**run, "steps": steps, "counts": counts, "terminal": run["status"] in TERMINAL_RUN},
            "dag": dag_picture(run["steps"]), "timeline": timeline_picture(run, events, markers, now)}


def _seconds(step: dict[str, Any], now: datetime) -> float | None:
    """How long the step's latest attempt took (or has been running)."""
    if not step["startedAt"]:
        return None
    started = datetime.fromisoformat(step["startedAt"])
    if step["status"] == "running":
        return (now - started).total_seconds()
    if step["finishedAt"]:
        return max(0.0, (datetime.fromisoformat(step["finishedAt"]) - started).total_seconds())
    return None


def dead_letters_context(conn: psycopg.Connection) -> dict[str, Any]:
    return {"dead_letters": dead_letters_list(conn)}
