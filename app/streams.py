"""What each page's socket sends: a snapshot on (re)connect, fragments after new events, and a
periodic tick. Fragments are the page's own partial templates, rendered by the same context
builders as the page, each a top-level element whose id htmx-ext-ws swaps out-of-band."""
from __future__ import annotations

from uuid import UUID

import psycopg
from flask import render_template, url_for

from app import context
from app.llm_view import stream_fragments
from app.streaming import STREAM_WAKE
from engine import store
from engine.model import Event

DASHBOARD_PARTIALS = ("_workers.html", "_queue.html", "_limits.html", "_runs.html")
RUN_PARTIALS = ("_run_header.html", "_llm_usage.html", "_dag.html", "_timeline.html", "_steps.html")
DEAD_LETTER_EVENTS = {"step_dead_lettered", "step_redriven", "run_cancelled", "run_completed", "run_failed"}


def render_all(names: tuple[str, ...], **values: object) -> str:
    return "".join(render_template(name, **values) for name in names)


class PageStream:
    run_id: UUID | None = None
    tick_seconds: float = 2.0

    def snapshot(self, conn: psycopg.Connection, upto: int) -> str:
        raise NotImplementedError

    def update(self, conn: psycopg.Connection, events: list[Event]) -> str:
        raise NotImplementedError

    def tick(self, conn: psycopg.Connection) -> str:
        return ""


class DashboardStream(PageStream):
    """Workers, queue counts and recent runs are redrawn; the event feed grows at the top."""

    def snapshot(self, conn: psycopg.Connection, upto: int) -> str:
        values = context.dashboard_context(conn, upto)
        return render_all((*DASHBOARD_PARTIALS, "_feed.html"), **values)

    def update(self, conn: psycopg.Connection, events: list[Event]) -> str:
        values = {**context.workers_context(conn), **context.queue_context(conn), **context.runs_context(conn)}
        feed = render_template("_feed_append.html", feed=list(reversed(events[-context.FEED_LENGTH:])))
        return render_all(DASHBOARD_PARTIALS, **values) + feed

    def tick(self, conn: psycopg.Connection) -> str:
        values = {**context.workers_context(conn), **context.queue_context(conn)}
        return render_all(("_workers.html", "_queue.html", "_limits.html"), **values)


class RunStream(PageStream):
    """Header, DAG, timeline and step table are redrawn; the event log grows at the bottom."""

    tick_seconds = 1.0

    def __init__(self, run_id: UUID) -> None:
        self.run_id = run_id
        self.terminal = False
        self.logged_worker_events: set[int] = set()
        self.page_path = url_for("pages.run_page", run_id=run_id)

    def snapshot(self, conn: psycopg.Connection, upto: int) -> str:
        values = {**context.run_context(conn, self.run_id, upto), **context.workers_context(conn),
                  "page_path": self.page_path}
        self.terminal = values["run"]["terminal"]
        return render_all((*RUN_PARTIALS, "_event_log.html", "_workers.html"), **values)

    def update(self, conn: psycopg.Connection, events: list[Event]) -> str:
        if all(e is STREAM_WAKE for e in events):  # only text arrived: redraw the text, not the pictures
            return stream_fragments(conn, self.run_id)
        pictures = self._pictures(conn)
        # The run's events, and the kills and losses of its workers that its own page logs too.
        mine = [e for e in events if e.run_id == self.run_id or e.id in self.logged_worker_events]
        return pictures + (render_template("_event_log_append.html", log=mine) if mine else "")

    def tick(self, conn: psycopg.Connection) -> str:
        workers = render_template("_workers.html", page_path=self.page_path, highlight_run=self.run_id,
                                  **context.workers_context(conn))
        return workers if self.terminal else self._pictures(conn)

    def _pictures(self, conn: psycopg.Connection) -> str:
        run = store.run_get(conn, self.run_id)
        values = {**context.run_picture_context(conn, run, context.run_events(conn, self.run_id)),
                  **context.workers_context(conn), "page_path": self.page_path}
        self.terminal = values["run"]["terminal"]
        self.logged_worker_events = {e.id for e in values["worker_events"]}
        return render_all((*RUN_PARTIALS, "_workers.html"), **values)


class DeadLettersStream(PageStream):
    tick_seconds = 30.0

    def snapshot(self, conn: psycopg.Connection, upto: int) -> str:
        return render_template("_dead_letters.html", **context.dead_letters_context(conn))

    def update(self, conn: psycopg.Connection, events: list[Event]) -> str:
        if not any(e.type in DEAD_LETTER_EVENTS for e in events):
            return ""
        return self.snapshot(conn, 0)
