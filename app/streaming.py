"""Streamed LLM text on the web: `GET /api/steps/<id>/stream?offset=N`, the `llm_chunk` messages of
`WS /ws/<run_id>` (resumed with `?streams=<step id>:<offset>,...`), and the wake-ups that make the
run page's text grow.

One `StreamHub` per web process LISTENs on the stream channel (the worker NOTIFYs the run id after
each batch commits) and wakes the sockets subscribed to that run by putting `STREAM_WAKE` in their
event queue; the socket then reads the new text by offset. As with events, NOTIFY is only a
wake-up: a socket also reads on its own events and ticks, so a lost one costs latency only.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from uuid import UUID

import psycopg
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from simple_websocket import Server

from app.broadcast import Broadcaster
from app.listener import ListenerThread
from app.llm_view import usd
from app.state import db
from engine.errors import InvalidRun, NotFound
from engine.model import Event
from engine.store.streams import STREAM_CHANNEL, stream_read
from engine.wire import chunk_to_ws, stream_to_api

bp = Blueprint("streaming", __name__)

# Not an audit event: id 0 and no run, so every event filter of the sockets passes it by.
STREAM_WAKE = Event(id=0, type="llm_stream", run_id=None, step_id=None, step=None, attempt=None, worker=None,
                    ts=datetime.min.replace(tzinfo=UTC), detail=None)
STREAMS_PARAM = re.compile(r"^(\d{1,18}:\d{1,10})(,\d{1,18}:\d{1,10}){0,99}$")


@bp.get("/api/steps/<int:step_id>/stream")
def step_stream(step_id: int) -> Response:
    offset = request.args.get("offset", "0")
    if not offset.isdigit() or len(offset) > 10:
        raise InvalidRun("offset must be a character offset (a non-negative integer)")
    with db() as conn:
        found = stream_read(conn, [step_id], offsets={step_id: int(offset)})
    if not found:
        raise NotFound(f"no step {step_id}")
    return jsonify(stream_to_api(found[0]))


def parse_streams(raw: str | None) -> dict[int, int]:
    """`?streams=12:40,13:0` → {12: 40, 13: 0}; None or empty is {} (everything from 0)."""
    if not raw:
        return {}
    if not STREAMS_PARAM.match(raw):
        raise InvalidRun("streams must be step-id:offset pairs separated by commas")
    return {int(s): int(o) for s, o in (pair.split(":") for pair in raw.split(","))}


class ChunkCursor:
    """What one JSON socket has sent of a run's streams: the end offset per step."""

    def __init__(self, run_id: UUID, offsets: dict[int, int]) -> None:
        self.run_id = run_id
        self.offsets = dict(offsets)

    def send_new(self, ws: Server, conn: psycopg.Connection) -> int:
        sent = 0
        for stream in stream_read(conn, run_id=self.run_id, offsets=self.offsets):
            for part in stream.parts:
                if part.text:
                    ws.send(json.dumps(chunk_to_ws(stream, part)))
                    sent += 1
            self.offsets[stream.step_id] = stream.end
        return sent


class StreamHub(ListenerThread):
    """The process's listener on the stream channel: a notification names a run, whose sockets
    (the broadcaster's subscribers) get `STREAM_WAKE` in their queue."""

    def __init__(self, database_url: str, broadcaster: Broadcaster) -> None:
        super().__init__(database_url, STREAM_CHANNEL, "stream")
        self.broadcaster = broadcaster

    def turn(self, conn: psycopg.Connection) -> None:
        for note in conn.notifies(timeout=1.0):
            self.broadcaster.wake(note.payload, STREAM_WAKE)


def stream_hub() -> StreamHub:
    """The process's hub, started on first use (after gunicorn forked, in the serving process)."""
    hub: StreamHub = current_app.extensions["dae_streams"]
    hub.start()
    return hub


def install(app: Flask) -> None:
    dae = app.extensions["dae"]
    app.extensions["dae_streams"] = StreamHub(dae.settings.database_url, dae.broadcaster)
    app.jinja_env.filters["usd"] = usd
    app.register_blueprint(bp)

