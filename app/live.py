"""WebSockets. `/ws/<run_id>` streams a run's audit events as JSON (history first, then live;
`?after=<id>` resumes). `/ws/pages/...` keep the pages current with HTML fragments that htmx-ext-ws
swaps in by id (`hx-swap-oob`); every (re)connect first gets a snapshot, so a page is never stale
or duplicated after a reconnect.

Each socket subscribes to the process's broadcaster *before* reading its snapshot, then sends only
events after the snapshot's horizon, de-duplicated by id. A handler never returns on its own (that
would be a normal close, after which htmx does not reconnect): it closes with 1011/1012/1013 when
the client must resync, and otherwise loops until the client goes away.
"""
from __future__ import annotations

import json
import time
from uuid import UUID

from flask import Blueprint, abort, request
from flask_sock import Sock
from simple_websocket import Server

from app.broadcast import Subscription
from app.context import run_events
from app.state import db, state
from app.streaming import STREAM_WAKE, ChunkCursor, parse_streams, stream_hub
from app.streams import DashboardStream, DeadLettersStream, PageStream, RunStream
from engine.errors import InvalidRun, NotFound, StoreUnavailable
from engine.store.dashboard import run_exists
from engine.wire import event_to_api

bp = Blueprint("live", __name__)
sock = Sock()

CLOSE_GOING_AWAY_RETRY = 1012  # "service restart": htmx reconnects and gets a fresh snapshot
CLOSE_INTERNAL_ERROR = 1011
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013  # JSON clients: resume with ?after=<last id>
IDLE_WAIT_SECONDS = 1.0
MIN_UPDATE_INTERVAL = 0.2


@bp.before_request
def _check_run_socket() -> None:
    """Refuse a bad JSON stream before the upgrade, with a plain HTTP status."""
    if request.endpoint != "live.run_events_socket":
        return
    if not request.args.get("after", "0").isdigit():
        abort(400, "after must be an event id (a non-negative integer)")
    try:
        parse_streams(request.args.get("streams"))
    except InvalidRun as exc:
        abort(400, str(exc))
    with db() as conn:
        if not run_exists(conn, request.view_args["run_id"]):
            abort(404, "no such run")


@sock.route("/ws/<uuid:run_id>", bp=bp)
def run_events_socket(ws: Server, run_id: UUID) -> None:
    last = int(request.args.get("after", "0"))
    # `?streams=` (even empty) opts in to llm_chunk messages, resumed from the given offsets.
    chunks = ChunkCursor(run_id, parse_streams(request.args.get("streams"))) if "streams" in request.args else None
    sub = _subscribe(ws, run_id)
    if sub is None:
        return
    try:
        with db() as conn:
            history = run_events(conn, run_id, upto=sub.start_horizon, after=last)
            for event in history:
                ws.send(json.dumps(event_to_api(event)))
                last = event.id
            if chunks:
                chunks.send_new(ws, conn)
        while ws.connected:
            if sub.overflowed:
                ws.close(CLOSE_TRY_AGAIN, f"fell behind: reconnect with ?after={last}")
                return
            batch = sub.get_batch(IDLE_WAIT_SECONDS, linger=0)  # JSON clients get each event at once
            for event in batch:
                if event.id > last and event.run_id == run_id:
                    ws.send(json.dumps(event_to_api(event)))
                    last = event.id
            if chunks and (any(e is STREAM_WAKE for e in batch) or (batch and chunks.offsets)):
                with db() as conn:
                    chunks.send_new(ws, conn)
    except StoreUnavailable:
        ws.close(CLOSE_INTERNAL_ERROR, f"database unavailable: reconnect with ?after={last}")
    finally:
        state().broadcaster.unsubscribe(sub)


@sock.route("/ws/pages/dashboard", bp=bp)
def dashboard_socket(ws: Server) -> None:
    serve_page(ws, DashboardStream())


@sock.route("/ws/pages/runs/<uuid:run_id>", bp=bp)
def run_page_socket(ws: Server, run_id: UUID) -> None:
    serve_page(ws, RunStream(run_id))


@sock.route("/ws/pages/dead-letters", bp=bp)
def dead_letters_socket(ws: Server) -> None:
    serve_page(ws, DeadLettersStream())


def serve_page(ws: Server, stream: PageStream) -> None:
    """Snapshot, then fragments for every batch of new events, and a tick for ages and clocks."""
    sub = _subscribe(ws, stream.run_id)
    if sub is None:
        return
    try:
        with db() as conn:
            ws.send(stream.snapshot(conn, sub.start_horizon))
        last_sent = time.monotonic()
        next_tick = last_sent + stream.tick_seconds
        while ws.connected:
            if sub.overflowed:
                ws.close(CLOSE_GOING_AWAY_RETRY, "fell behind: reconnect for a fresh snapshot")
                return
            linger = max(0.05, MIN_UPDATE_INTERVAL - (time.monotonic() - last_sent))
            events = sub.get_batch(max(0.05, min(IDLE_WAIT_SECONDS, next_tick - time.monotonic())), linger)
            if not events and time.monotonic() < next_tick:
                continue
            with db() as conn:
                html = stream.update(conn, events) if events else stream.tick(conn)
            if html:
                ws.send(html)
            last_sent = time.monotonic()
            next_tick = last_sent + stream.tick_seconds
    except StoreUnavailable:
        ws.close(CLOSE_INTERNAL_ERROR, "database unavailable")
    except NotFound:
        ws.close(CLOSE_POLICY, "no such run")  # htmx does not reconnect after this code
    finally:
        state().broadcaster.unsubscribe(sub)


def _subscribe(ws: Server, run_id: UUID | None) -> Subscription | None:
    try:
        if run_id is not None:
            stream_hub()  # wakes this run's sockets when its LLM steps stream
        return state().broadcaster.subscribe(run_id)
    except TimeoutError:
        ws.close(CLOSE_INTERNAL_ERROR, "live events unavailable")
        return None
