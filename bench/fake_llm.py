"""A local OpenAI-compatible server for the tests and the benchmarks (no network):
`/v1/chat/completions` answers with server-sent events — one `delta.content` chunk per word at a
chosen pace, the usage in the final chunk, then `data: [DONE]` — or, per a script, with a 429 and
Retry-After, a 5xx, a slow stream, a stream that breaks mid-way (the connection closes without
`[DONE]`), or words that are each the wall-clock time they were written (`Reply.stamped`, for
latency measurements).

    server = FakeLLM(script=[Reply.rate_limited(2)], default=Reply.ok("One two three."))
    env = {"LLM_BASE_URL": server.url}

It lives in bench/ because the benchmarks use it and bench/ must not import the tests; the tests
import it from here. Standard library only.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = ("Three sources agree that the queue recovers in well under a second, and that "
                "latency stays low while throughput scales with workers.")


@dataclass(frozen=True)
class Reply:
    """What one request gets."""
    status: int = 200
    text: str = DEFAULT_TEXT
    tokens_per_second: float = 0.0        # 0: every chunk at once
    break_after_words: int | None = None  # close the connection after this many words, no [DONE]
    retry_after: str | None = None
    usage: bool = True                    # send usage in the final chunk
    stamped: bool = False                 # each word is `[<unix time it was written>] `
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def ok(cls, text: str = DEFAULT_TEXT, tokens_per_second: float = 0.0) -> Reply:
        return cls(text=text, tokens_per_second=tokens_per_second)

    @classmethod
    def rate_limited(cls, retry_after: float) -> Reply:
        return cls(status=429, retry_after=f"{retry_after:g}")

    @classmethod
    def server_error(cls, status: int = 503) -> Reply:
        return cls(status=status)

    @classmethod
    def broken(cls, after_words: int, tokens_per_second: float = 0.0, text: str = DEFAULT_TEXT) -> Reply:
        return cls(text=text, break_after_words=after_words, tokens_per_second=tokens_per_second)

    @classmethod
    def stamped_words(cls, words: int, tokens_per_second: float) -> Reply:
        """`words` chunks, each carrying the time it was written: receive time − stamp = latency."""
        return cls(text=" ".join(["stamp"] * words), tokens_per_second=tokens_per_second, stamped=True)


class FakeLLM:
    """The server, on a free local port: `url` is its LLM_BASE_URL; `requests` is what it was sent."""

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None) -> None:
        self.script = list(script or [])
        self.default = default or Reply.ok()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = outer._next(self.path, dict(self.headers), body)
                try:
                    outer._answer(self, reply, body)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, path: str, headers: dict[str, str], body: dict) -> Reply:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body, "at": time.time()})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else self.default

    def _answer(self, handler: BaseHTTPRequestHandler, reply: Reply, body: dict) -> None:
        if reply.status != 200:
            data = json.dumps({"error": {"message": f"scripted {reply.status}"}}).encode()
            handler.send_response(reply.status)
            for key, value in {**reply.headers, "Content-Type": "application/json",
                               "Content-Length": str(len(data)),
                               **({"Retry-After": reply.retry_after} if reply.retry_after else {})}.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        words = [w + " " for w in reply.text.split(" ")]
        words[-1] = words[-1].rstrip()
        for i, word in enumerate(words):
            if reply.break_after_words is not None and i >= reply.break_after_words:
                handler.wfile.flush()
                handler.close_connection = True
                return  # the socket closes with no [DONE]: a stream broken mid-way
            if reply.tokens_per_second:
                time.sleep(1 / reply.tokens_per_second)  # the pace of a real provider's stream
            content = f"[{time.time():.6f}] " if reply.stamped else word
            self._event(handler, {"choices": [{"index": 0, "delta": {"content": content}}]})
        self._event(handler, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if reply.usage and (body.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
            self._event(handler, {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                                                           "total_tokens": prompt + len(words)}})
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()

    @staticmethod
    def _event(handler: BaseHTTPRequestHandler, payload: dict) -> None:
        handler.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        handler.wfile.flush()
