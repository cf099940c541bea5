"""gunicorn's threaded worker, hardened for a public page (issue 13): no client can hold the web
process's threads by being slow or by opening many connections.

gunicorn's `gthread` worker hands a connection to a thread as soon as its first byte arrives, and
that thread then reads the rest of the headers with a blocking socket: a client that trickles its
headers (slowloris) holds a thread for as long as it likes, and a hundred of them hold them all.
This worker adds two things, both in `enqueue_req` (the one place every connection passes):

- a total deadline per request (REQUEST_READ_SECONDS): the socket is wrapped so that reading a
  request's headers and body ends, as if the client had hung up, once the deadline has passed —
  whatever the pace of the bytes. A WebSocket disarms it after the upgrade (`disarm`).
- a cap of open connections per peer address (MAX_CONNECTIONS_PER_ADDRESS), when the app is not
  behind a proxy (CLIENT_IP_HEADER empty): one address cannot take more threads than that.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from app.config import WebSettings

log = logging.getLogger("gunicorn.error")

WRITE_SECONDS = 30.0  # a client that reads nothing for this long while we write is gone
TOO_MANY = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: 44\r\n\r\ntoo many connections from your address (cap)\n")


class DeadlineSocket:
    """A client socket whose reads end (return b"", as at end of stream) once the request's read
    deadline has passed. `setblocking(True)`, which gunicorn calls when it starts on a request,
    arms a fresh deadline; writes get their own, longer timeout. Anything else is the socket's."""

    def __init__(self, sock: socket.socket, read_seconds: float, on_close: Callable[[], None]) -> None:
        self._sock = sock
        self._read_seconds = read_seconds
        self._deadline: float | None = None
        self._on_close: Callable[[], None] | None = on_close
        self._close_lock = threading.Lock()
        self._expired = False  # a read deadline passed: this connection reads nothing more
        self._draining = False  # half-closed by gunicorn: drain what has arrived, wait for nothing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        if flag:
            self._deadline = time.monotonic() + self._read_seconds
            self._sock.settimeout(self._read_seconds)
        else:
            self._sock.setblocking(False)

    def disarm(self) -> None:
        """A long-lived connection (a WebSocket) from here on: reads wait as long as they must."""
        self._deadline = None
        self._sock.settimeout(None)

    def shutdown(self, how: int) -> None:
        # gunicorn half-closes, then lingers reading whatever the client still sends, for up to
        # 2 s, in its main loop, where a client that keeps sending would stall every connection.
        self._draining = True
        self._sock.shutdown(how)

    def _arm_read(self) -> bool:
        if self._draining:
            self._sock.setblocking(False)  # a read that would wait raises BlockingIOError: done
            return not self._expired
        if self._expired:
            return False
        if self._deadline is None:
            return True
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._expired = True
            return False
        current = self._sock.gettimeout()
        if current != 0.0:  # a non-blocking read stays non-blocking
            self._sock.settimeout(left if current is None else min(current, left))
        return True

    def recv(self, size: int, *flags: int) -> bytes:
        if not self._arm_read():
            return b""
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            if self._deadline is None:
                raise
            self._expired = True
            return b""  # gunicorn closes the connection as if the client had hung up

    def recv_into(self, buffer: Any, *args: int) -> int:
        if not self._arm_read():
            return 0
        try:
            return self._sock.recv_into(buffer, *args)
        except TimeoutError:
            if self._deadline is None:
                raise
            self._expired = True
            return 0

    def _arm_write(self) -> None:
        if self._sock.gettimeout() != 0.0:  # leave non-blocking writes non-blocking
            self._sock.settimeout(WRITE_SECONDS)

    def send(self, data: bytes, *flags: int) -> int:
        self._arm_write()
        return self._sock.send(data, *flags)

    def sendall(self, data: bytes, *flags: int) -> None:
        self._arm_write()
        self._sock.sendall(data, *flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self._arm_write()
        return self._sock.sendfile(file, offset, count)

    def close(self) -> None:
        with self._close_lock:
            on_close, self._on_close = self._on_close, None
        self._sock.close()
        if on_close is not None:
            on_close()


class GuardedThreadWorker(ThreadWorker):
    """`gthread` with a read deadline per request and a cap of connections per address."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        web = WebSettings.from_env()
        self.read_seconds = web.request_read_seconds
        self.per_address = 0 if web.client_ip_header else web.max_connections_per_address
        self.open_by_address: Counter[str] = Counter()
        self.address_lock = threading.Lock()

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, DeadlineSocket):  # a new connection
            address = str(conn.client[0]) if isinstance(conn.client, tuple) else str(conn.client)
            with self.address_lock:
                refused = 0 < self.per_address <= self.open_by_address[address]
                if not refused:
                    self.open_by_address[address] += 1
            if refused:
                self._refuse(conn, address)
                return
            conn.sock = DeadlineSocket(conn.sock, self.read_seconds, lambda: self._forget(address))
        super().enqueue_req(conn)

    def _forget(self, address: str) -> None:
        with self.address_lock:
            self.open_by_address[address] -= 1
            if self.open_by_address[address] <= 0:
                del self.open_by_address[address]

    def _refuse(self, conn: Any, address: str) -> None:
        self.nr_conns -= 1  # counted by accept(); this connection ends here
        try:
            conn.sock.setblocking(False)
            conn.sock.send(TOO_MANY)
        except OSError:
            pass  # best effort: the close below is the answer that matters
        conn.sock.close()
        log.debug("refused a connection from %s: %d already open", address, self.per_address)
