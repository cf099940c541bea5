"""Read models for the web pages and `/metrics`: queue counts, the dead-letter list, and the
worker events that mark a run's attempt timeline, as `engine.model` records. Everything here only
reads."""
from __future__ import annotations

from datetime import datetime
from uuid import UUID

import psycopg

from engine.model import DeadLetter, Event, QueueSnapshot, RunStatus, StepStatus
from engine.store.events import SELECT_EVENTS, event_from_row

# One round trip for the dashboard and for every scrape. "retrying" are ready steps that wait out a
# backoff (run_at in the future); "ready" are claimable now.
_QUEUE = """
SELECT
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
     (SELECT status, count(*) AS n FROM steps GROUP BY status) s) AS steps,
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
     (SELECT status, count(*) AS n FROM runs GROUP BY status) r) AS runs,
  (SELECT count(*) FROM steps WHERE status = 'ready' AND run_at <= now()) AS claimable,
  (SELECT count(*) FROM steps WHERE status = 'ready' AND run_at > now()) AS retrying,
  (SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8
     FROM steps WHERE status = 'ready' AND run_at <= now()) AS oldest_ready_seconds,
  (SELECT count(*) FROM workers WHERE status = 'running') AS workers_alive,
  (SELECT coalesce(max(id), 0) FROM audit_log) AS last_event_id
"""

_DEAD_LETTERS = """
SELECT s.id, s.name, s.run_id, r.goal, r.status AS run_status, s.attempt, s.reclaims, s.last_error,
       s.finished_at
FROM steps s JOIN runs r ON r.id = s.run_id
WHERE s.status = 'dead_letter'
ORDER BY s.finished_at DESC NULLS LAST, s.id DESC
LIMIT %s
"""

_WORKER_EVENTS = SELECT_EVENTS + """
WHERE a.run_id IS NULL AND a.event = ANY(%(types)s) AND a.worker = ANY(%(workers)s)
  AND a.created_at BETWEEN %(start)s AND %(end)s
ORDER BY a.id
LIMIT 500
"""


def queue_snapshot(conn: psycopg.Connection) -> QueueSnapshot:
    """Steps and runs by status (every status present, zeros included), claimable and retrying
    steps, the oldest claimable step's age, live workers and the newest audit id."""
    row = conn.execute(_QUEUE).fetchone()
    return QueueSnapshot(
        steps={status: int(row["steps"].get(status, 0)) for status in StepStatus},
        runs={status: int(row["runs"].get(status, 0)) for status in RunStatus},
        claimable=row["claimable"], retrying=row["retrying"], oldest_ready_seconds=row["oldest_ready_seconds"],
        workers_alive=row["workers_alive"], last_event_id=row["last_event_id"])


def dead_letters_list(conn: psycopg.Connection, limit: int = 200) -> list[DeadLetter]:
    """Dead-lettered steps, newest first, with their run's goal and status."""
    rows = conn.execute(_DEAD_LETTERS, (limit,)).fetchall()
    return [DeadLetter(id=r["id"], name=r["name"], run_id=r["run_id"], goal=r["goal"],
                       run_status=RunStatus(r["run_status"]), attempt=r["attempt"], reclaims=r["reclaims"],
                       error=r["last_error"], finished_at=r["finished_at"]) for r in rows]


def worker_events_between(conn: psycopg.Connection, workers: list[str], start: datetime, end: datetime,
                          types: tuple[str, ...] = ("worker_lost", "worker_kill_requested", "worker_started")
                          ) -> list[Event]:
    """Worker lifecycle events (no run) of the given workers in a time range: the timeline's markers."""
    if not workers:
        return []
    rows = conn.execute(_WORKER_EVENTS, {"types": list(types), "workers": workers,
                                         "start": start, "end": end}).fetchall()
    return [event_from_row(r) for r in rows]


def run_exists(conn: psycopg.Connection, run_id: UUID | str) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE id = %s", (run_id,)).fetchone() is not None


def step_leases(conn: psycopg.Connection, run_id: UUID | str) -> dict[int, datetime]:
    """Lease expiry of the run's running steps, by step id: heartbeats push it forward, so the run
    page can show each running attempt's last heartbeat."""
    rows = conn.execute("SELECT id, lease_expires_at FROM steps WHERE run_id = %s AND status = %s "
                        "AND lease_expires_at IS NOT NULL", (run_id, StepStatus.RUNNING)).fetchall()
    return {r["id"]: r["lease_expires_at"] for r in rows}


def database_ping(conn: psycopg.Connection) -> None:
    """A round trip to the database (the health check)."""
    conn.execute("SELECT 1").fetchone()
