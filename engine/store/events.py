"""Reading the audit log as `Event` records, and the NOTIFY channels that announce it.

NOTIFY is only a wake-up (payloads are empty): listeners read rows by id, so a reconnecting
client that passes the last id it saw misses nothing.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from engine.model import Event
from engine.store.errors import translated
from engine.store.ids import as_run_id

EVENTS_CHANNEL = "dae_events"
STEPS_READY_CHANNEL = "dae_steps_ready"

SELECT_EVENTS = """
SELECT a.id, a.event, a.run_id, a.step_id, s.name AS step, a.attempt, a.worker, a.created_at, a.detail
FROM audit_log a LEFT JOIN steps s ON s.id = a.step_id
"""


def event_from_row(row: dict[str, Any]) -> Event:
    """An audit row read with `SELECT_EVENTS` as an `Event`."""
    return Event(id=row["id"], type=row["event"], run_id=row["run_id"], step_id=row["step_id"],
                 step=row["step"], attempt=row["attempt"], worker=row["worker"],
                 ts=row["created_at"], detail=row["detail"])


def events_after(conn: psycopg.Connection, run_id: UUID | str, after: int = 0, limit: int = 1000) -> list[Event]:
    """A run's events with id > after, in order."""
    run_id = as_run_id(run_id)
    rows = conn.execute(SELECT_EVENTS + " WHERE a.run_id = %s AND a.id > %s ORDER BY a.id LIMIT %s",
                        (run_id, after, limit)).fetchall()
    return [event_from_row(r) for r in rows]


def events_global_after(conn: psycopg.Connection, after: int, limit: int = 500) -> list[Event]:
    """Every event with id > after, in order (the web process's single listener reads these)."""
    rows = conn.execute(SELECT_EVENTS + " WHERE a.id > %s ORDER BY a.id LIMIT %s", (after, limit)).fetchall()
    return [event_from_row(r) for r in rows]


def events_by_ids(conn: psycopg.Connection, ids: list[int]) -> list[Event]:
    rows = conn.execute(SELECT_EVENTS + " WHERE a.id = ANY(%s) ORDER BY a.id", (ids,)).fetchall()
    return [event_from_row(r) for r in rows]


def events_recent(conn: psycopg.Connection, limit: int = 50) -> list[Event]:
    """The newest events of all runs, oldest first."""
    rows = conn.execute(SELECT_EVENTS + " ORDER BY a.id DESC LIMIT %s", (limit,)).fetchall()
    return [event_from_row(r) for r in reversed(rows)]


def event_latest_id(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) AS id FROM audit_log").fetchone()
    return row["id"]


@translated
def listen(conn: psycopg.Connection, *channels: str) -> None:
    for channel in channels:
        conn.execute(f"LISTEN {channel}")  # channel names are our constants, never input
