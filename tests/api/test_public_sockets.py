"""The web process's threads against one hostile address (issue 13, points 3 and 4): WebSockets
capped per client and in total with a readable close reason, slow requests cut off, connections
capped per address, page sockets that take no client messages; and /healthz and pages answering
throughout. The attacker speaks from 127.0.0.2 and 127.0.0.3 (the loopback answers any 127/8
address), everyone else from 127.0.0.1."""
from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from tests.helpers import wait_for
from tests.web.support import WebServer

CAPS = {"MAX_CONNECTIONS_PER_ADDRESS": "30", "MAX_SOCKETS_PER_CLIENT": "8", "MAX_SOCKETS": "12",
        "REQUEST_READ_SECONDS": "2", "WEB_THREADS": "40"}


@pytest.fixture
def capped(db_url: str, tmp_path: Path) -> Iterator[WebServer]:
    web = WebServer(db_url, tmp_path, **CAPS).start()
    yield web
    web.stop()


def connect_from(web: WebServer, source: str, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=timeout, source_address=(source, 0))
    return sock


def open_socket(web: WebServer, source: str, path: str = "/ws/pages/dashboard") -> websocket.WebSocket:
    return websocket.create_connection(web.ws_url(path), timeout=10, socket=connect_from(web, source))


def first_frame(ws: websocket.WebSocket) -> tuple[int, bytes]:
    """(opcode, data) of the next frame, control frames included (and not answered)."""
    frame = ws.recv_frame()
    return frame.opcode, frame.data


def close_code_and_reason(data: bytes) -> tuple[int, str]:
    return struct.unpack("!H", data[:2])[0], data[2:].decode()


def healthz_answers_within_a_second(web: WebServer) -> bool:
    with urllib.request.urlopen(web.url + "/healthz", timeout=1) as response:
        return response.status == 200


def test_sockets_are_capped_per_client_and_in_total_with_a_reason_and_pages_still_answer(capped):
    mine = [open_socket(capped, "127.0.0.2") for _ in range(8)]
    assert all(first_frame(ws)[0] == websocket.ABNF.OPCODE_TEXT for ws in mine)  # snapshots
    ninth = open_socket(capped, "127.0.0.2")
    opcode, data = first_frame(ninth)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert close_code_and_reason(data) == (1013, "your address has 8 live connections open, the limit; "
                                                 "close other tabs of this site")
    others = [open_socket(capped, "127.0.0.3") for _ in range(4)]
    assert all(first_frame(ws)[0] == websocket.ABNF.OPCODE_TEXT for ws in others)
    over = open_socket(capped, "127.0.0.3")
    code, reason = close_code_and_reason(first_frame(over)[1])
    assert code == 1013 and "12 live connections open" in reason
    assert healthz_answers_within_a_second(capped)
    assert capped.request("GET", "/")[0] == 200
    for ws in [*mine, ninth, *others, over]:
        ws.close()
    # A closed socket gives its slot back (once its handler has noticed the close).
    def reopened() -> bool:
        ws = open_socket(capped, "127.0.0.2")
        try:
            return first_frame(ws)[0] == websocket.ABNF.OPCODE_TEXT
        finally:
            ws.close()
    wait_for(reopened, 10, "a socket slot to be given back", interval=0.2)


def test_slow_headers_are_cut_off_and_one_address_cannot_hold_every_thread(capped):
    stop = threading.Event()
    slow: list[socket.socket] = []
    refused = 0
    for _ in range(100):  # the slowloris: more connections than the process has threads
        sock = connect_from(capped, "127.0.0.2")
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            refused += 1
            continue
        slow.append(sock)

    def trickle() -> None:
        while not stop.wait(0.3):  # a header byte every 0.3 s: each one is in time, the whole never is
            for sock in list(slow):
                try:
                    sock.send(b"X")
                except OSError:
                    slow.remove(sock)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        assert healthz_answers_within_a_second(capped)
        assert capped.request("GET", "/")[0] == 200
        started = time.monotonic()
        # Every slow connection ends: refused at once past the address's cap, or cut off at its
        # read deadline although it never stopped sending.
        wait_for(lambda: not slow, 20, "the server to close every slow connection", interval=0.2)
        assert time.monotonic() - started >= 0  # (the deadline itself is REQUEST_READ_SECONDS)
        assert healthz_answers_within_a_second(capped)
    finally:
        stop.set()
        trickler.join(5)
        for sock in slow:
            sock.close()
    assert "Traceback" not in capped.output()


def test_page_sockets_take_no_messages_and_buffer_nothing(capped):
    big = open_socket(capped, "127.0.0.2")
    first_frame(big)  # the snapshot
    try:
        big.send("x" * (1 << 20))
    except OSError:
        pass  # the server may close before the whole megabyte is written
    code, _reason = close_code_and_reason(next_close(big))
    assert code == 1009  # message too big
    small = open_socket(capped, "127.0.0.2")
    first_frame(small)
    small.send("hello")
    assert close_code_and_reason(next_close(small)) == (1008, "this socket takes no messages")
    rss_before = web_rss_kb(capped)
    for _ in range(50):
        ws = open_socket(capped, "127.0.0.2")
        first_frame(ws)
        try:
            ws.send("y" * (1 << 20))
        except OSError:
            pass
        ws.close()
    # 50 MB were offered; a socket buffers at most one small frame before it closes.
    assert web_rss_kb(capped) - rss_before < 30_000
    assert healthz_answers_within_a_second(capped)


def next_close(ws: websocket.WebSocket) -> bytes:
    while True:
        opcode, data = first_frame(ws)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return data


def web_rss_kb(web: WebServer) -> int:
    [pid] = web.gunicorn_workers()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
