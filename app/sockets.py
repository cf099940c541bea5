"""WebSocket plumbing for a public page (issue 13): caps on open sockets, in total and per client,
with a close reason a person can read; sockets that take no messages from the client; and quiet
ends when the client goes away.

Every open WebSocket holds one of gunicorn's threads for its whole life, so the caps are what keeps
threads free for pages, the API and /healthz (MAX_SOCKETS below WEB_THREADS). Our sockets only
send: a client's data message, or any frame bigger than SOCKET_MESSAGE_BYTES, closes the socket,
so nothing a client sends is ever buffered beyond one small frame.

`socket_route` replaces flask-sock's `Sock.route`: the same simple-websocket server, built from
our `PageSocket` class, inside the caps.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from simple_websocket import ConnectionClosed, Server

from app.config import WebSettings
from app.security import client_id
from app.state import state

log = logging.getLogger(__name__)

SOCKET_PING_SECONDS = 25
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


class PageSocket(Server):
    """A server socket that takes no data messages: the first one closes it (1008)."""

    def _handle_events(self) -> bool:
        keep_going = super()._handle_events()
        if keep_going and self.input_buffer:
            self.input_buffer.clear()
            self.close(CLOSE_POLICY, "this socket takes no messages")
            self.event.set()
            return False
        return keep_going


class SocketSlots:
    """Open sockets, in total and per client, of this web process."""

    def __init__(self, web: WebSettings) -> None:
        self.total_cap = web.max_sockets
        self.per_client_cap = web.max_sockets_per_client
        self.open: Counter[str] = Counter()
        self.lock = threading.Lock()

    def acquire(self, client: str) -> str | None:
        """Take a slot for `client`; returns why not when a cap is reached."""
        with self.lock:
            if self.total_cap > 0 and self.open.total() >= self.total_cap:
                return f"the server has {self.total_cap} live connections open, its limit; try again later"
            if self.per_client_cap > 0 and self.open[client] >= self.per_client_cap:
                return (f"your address has {self.per_client_cap} live connections open, the limit; "
                        "close other tabs of this site")
            self.open[client] += 1
            return None

    def release(self, client: str) -> None:
        with self.lock:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]


def install(app: Flask, web: WebSettings) -> None:
    app.extensions["dae_sockets"] = SocketSlots(web)


class _Handled(Response):
    """What the view returns after the socket has been served: under gunicorn, ending the
    request without writing anything (the WebSocket owned the connection)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if self.mode == "gunicorn":
            raise StopIteration()
        return super().__call__(environ, start_response)


def socket_route(path: str, bp: Blueprint) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `handler(ws, **url_args)` as a WebSocket endpoint within the caps."""
    def decorator(handler: Callable[..., None]) -> Callable[..., None]:
        @wraps(handler)
        def view(*args: Any, **kwargs: Any) -> Response:
            raw = request.environ.get("gunicorn.socket")
            if hasattr(raw, "disarm"):
                raw.disarm()  # app/gunicorn_worker.py: a socket lives longer than a request's read deadline
            ws = PageSocket(request.environ, ping_interval=SOCKET_PING_SECONDS,
                            max_message_size=state().web.socket_message_bytes)
            slots: SocketSlots = current_app.extensions["dae_sockets"]
            client = client_id()
            refusal = slots.acquire(client)
            try:
                if refusal:
                    ws.close(CLOSE_TRY_AGAIN, refusal)
                else:
                    handler(ws, *args, **kwargs)
            except (ConnectionClosed, OSError) as exc:
                # The page navigated away or the network dropped mid-send: nothing went wrong here.
                log.debug("socket %s ended by the client: %s", request.path, exc)
            finally:
                if not refusal:
                    slots.release(client)
                try:
                    ws.close()
                except (ConnectionClosed, OSError):
                    pass  # already closed
            return _Handled(ws.mode)

        bp.route(path, websocket=True)(view)
        return view
    return decorator
