"""`WS /ws/<run_id>`: a run's events as JSON, history first then live, resumable with `?after=`,
across a web process that is killed under the client; and the Origin check on upgrades."""
from __future__ import annotations

import json
import os
import signal
import uuid

import pytest
import websocket

from engine import store
from engine.wire import event_to_api
from tests.helpers import make_run, step, wait_for

TERMINAL = {"run_completed", "run_failed", "run_cancelled"}


def slow_chain(length: int, seconds: float) -> dict:
    steps = [step(f"tool_call.s{i}", [f"tool_call.s{i - 1}"] if i else None, tool="sleep", seconds=seconds)
             for i in range(length)]
    return make_run(*steps, goal="slow chain")


def read_until(ws: websocket.WebSocket, done: callable, events: list[dict]) -> list[dict]:
    while not done(events):
        events.append(json.loads(ws.recv()))
    return events


def test_history_then_live_events_in_order_without_gaps(server, module_workers, module_conn):
    _, created = server.json("POST", "/runs", slow_chain(3, 0.3))
    run_id = created["runId"]
    ws = websocket.create_connection(server.ws_url(f"/ws/{run_id}"), timeout=30)
    try:
        events = read_until(ws, lambda got: bool(got) and got[-1]["type"] in TERMINAL, [])
    finally:
        ws.close()
    stored = [event_to_api(e) for e in store.events_after(module_conn, run_id)]
    assert [e["id"] for e in events] == [e["id"] for e in stored[:len(events)]]
    assert events[-1]["type"] == "run_completed" and events == stored[:len(events)]


def test_after_resumes_from_an_event_id(server, module_workers, module_conn):
    _, created = server.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data")))
    run_id = created["runId"]
    wait_for(lambda: store.run_get(module_conn, run_id).status == "completed", 20, "run completed")
    stored = [e.id for e in store.events_after(module_conn, run_id)]
    ws = websocket.create_connection(server.ws_url(f"/ws/{run_id}?after={stored[1]}"), timeout=10)
    try:
        events = read_until(ws, lambda got: len(got) == len(stored) - 2, [])
    finally:
        ws.close()
    assert [e["id"] for e in events] == stored[2:]


def test_a_stream_dropped_by_the_server_resumes_with_nothing_missing_or_twice(server, module_workers, module_conn):
    _, created = server.json("POST", "/runs", slow_chain(8, 0.4))
    run_id = created["runId"]
    ws = websocket.create_connection(server.ws_url(f"/ws/{run_id}"), timeout=30)
    events = read_until(ws, lambda got: len(got) >= 5, [])
    for pid in server.gunicorn_workers():
        os.kill(pid, signal.SIGKILL)  # the web process dies under the client
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            events.append(json.loads(ws.recv()))
    last = events[-1]["id"]
    ws = wait_for(lambda: _connect(server.ws_url(f"/ws/{run_id}?after={last}")), 30, "the web app to come back")
    try:
        read_until(ws, lambda got: got[-1]["type"] in TERMINAL, events)
    finally:
        ws.close()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids == [e.id for e in store.events_after(module_conn, run_id)], "an event is missing"


def _connect(url: str) -> websocket.WebSocket | None:
    try:
        return websocket.create_connection(url, timeout=30)
    except (OSError, websocket.WebSocketException):
        return None


def test_a_socket_from_another_origin_is_refused(server, module_workers):
    _, created = server.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data")))
    for path in (f"/ws/{created['runId']}", "/ws/pages/dashboard"):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(server.ws_url(path), origin="https://evil.example", timeout=10)
        assert refused.value.status_code == 403


def test_an_unknown_run_or_a_bad_after_is_refused_before_the_upgrade(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as unknown:
        websocket.create_connection(server.ws_url(f"/ws/{uuid.uuid4()}"), timeout=10)
    assert unknown.value.status_code == 404
    _, created = server.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data")))
    with pytest.raises(websocket.WebSocketBadStatusException) as bad:
        websocket.create_connection(server.ws_url(f"/ws/{created['runId']}?after=x"), timeout=10)
    assert bad.value.status_code == 400
