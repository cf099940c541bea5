"""Small breaks a hostile visitor found (issue 13, point 9), over HTTP against a real gunicorn: what
JSON allows but Postgres or Python cannot take is a 400, not a 500; names end where they seem to;
event cursors are ASCII numbers; a reused idempotency key names nobody's run; sockets that the
client drops end quietly; the listening address is a setting."""
from __future__ import annotations

import socket
import struct
from urllib.parse import quote

import pytest
import websocket

from app.__main__ import gunicorn_argv
from app.config import WebSettings
from engine import store
from engine.verify import verify_all
from tests.helpers import make_run, step, wait_for

DEEP = 10_000


def raw_run(input_json: str, goal: str = '"g"') -> bytes:
    head = '{"goal": ' + goal + ', "steps": [{"name": "tool_call.a", "input": {"tool": "fetch_data", "x": '
    return (head + input_json + "}}]}").encode()


@pytest.mark.parametrize("body", [
    raw_run('"a\\u0000b"'),                 # NUL: jsonb cannot store it
    raw_run('"x"', goal='"a\\u0000b"'),
    raw_run('{"k\\u0000": 1}'),
    raw_run('"\\ud800"'),                   # a lone surrogate: not encodable as UTF-8
    raw_run('{"\\udfff": 1}'),
    raw_run("NaN"), raw_run("Infinity"), raw_run("-Infinity"),
    raw_run("[" * DEEP + "]" * DEEP),      # 10k-deep nesting
    raw_run("[" * 70 + "]" * 70),          # deeper than MAX_JSON_DEPTH, shallow enough to parse
    b'{"goal": "g", "steps": [{"name": "tool_call.a\\n", "input": {"tool": "fetch_data"}}]}',
], ids=["nul", "nul-goal", "nul-key", "surrogate", "surrogate-key", "nan", "inf", "-inf", "deep", "deep-70",
        "name-newline"])
def test_json_that_postgres_or_python_cannot_take_is_refused_with_400(server, module_conn, body):
    before = len(store.run_ids(module_conn))
    status, answer = server.json("POST", "/api/runs", raw=body)
    assert status == 400, answer
    assert answer["error"]
    assert len(store.run_ids(module_conn)) == before
    assert "Traceback" not in server.output()


def test_event_cursors_are_ascii_numbers_that_fit(server, module_conn):
    _, created = server.json("POST", "/api/runs", make_run(step("tool_call.a", tool="fetch_data")))
    run_id = created["runId"]
    for after in (quote("²"), quote("١"), "99999999999999999999", "", "-1"):
        status, answer = server.json("GET", f"/api/runs/{run_id}/events?after={after}")
        assert status == 400, (after, answer)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(server.ws_url(f"/ws/{run_id}?after={after}"), timeout=10)
        assert refused.value.status_code == 400
    assert server.json("GET", f"/api/runs/{run_id}/events?after=0")[0] == 200


def test_a_reused_idempotency_key_does_not_name_the_other_run(server, module_conn):
    first = make_run(step("tool_call.a", tool="fetch_data"), key="shared-key-13")
    status, created = server.json("POST", "/api/runs", first)
    assert status == 201
    status, answer = server.json("POST", "/api/runs", {**first, "goal": "someone else"})
    assert status == 409
    assert created["runId"] not in answer["error"]


def test_sockets_dropped_by_the_client_end_quietly(server, module_conn):
    for _ in range(20):  # a page navigating away mid-stream: the TCP connection is reset
        ws = websocket.create_connection(server.ws_url("/ws/pages/dashboard"), timeout=10)
        ws.recv()
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.sock.close()
    server.json("POST", "/api/runs", make_run(step("tool_call.a", tool="fetch_data")))  # events to send
    wait_for(lambda: server.healthy(), 10, "the server to stay healthy")
    log = server.output()
    assert "Bad file descriptor" not in log and "Traceback" not in log and " ERROR " not in log
    assert verify_all(module_conn) == {}


def test_the_listening_address_is_a_setting_with_all_interfaces_by_default():
    assert "0.0.0.0:8080" in gunicorn_argv(WebSettings())
    argv = gunicorn_argv(WebSettings(bind_address="127.0.0.1", port=9999))
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:9999"
