"""LLM streaming: a token's arrival at the worker → its appearance at a WebSocket client of
`WS /ws/<run_id>?streams=`, and what streaming costs in write transactions.

A local OpenAI-compatible server streams at a provider's pace (30 tokens/s); each token carries
the wall-clock time it was written to the socket (on this machine, within a fraction of a
millisecond of its arrival at the worker), so latency = client receive time − that stamp. It
includes the worker's batching (LLM_STREAM_FLUSH_SECONDS, default 75 ms), the commit, the NOTIFY,
the web process's read and the socket. The write cost is the chunk transactions a streaming step
commits per second (each is followed by one asynchronous-commit NOTIFY statement).
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from bench.appliance import LIMITS_RAISED
from bench.figures import Figure, Unavailable, collect, percentile
from bench.processes import Process, WebApp, start_worker, wait_workers_registered
from bench.server import BenchServer

TOKENS_PER_SECOND = 30.0
STAMP = re.compile(r"\[(\d+\.\d+)\]")


class PacedStream:
    """`/chat/completions` as server-sent events: `tokens` chunks, each `[<unix time>] `."""

    def __init__(self, tokens: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(tokens):
                    time.sleep(1 / TOKENS_PER_SECOND)
                    chunk = {"choices": [{"delta": {"content": f"[{time.time():.6f}] "}}]}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                usage = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": tokens}}
                self.wfile.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")

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


def measure_stream(url: str, web: WebApp, tokens: int) -> dict[str, float]:
    import websocket

    body = {"goal": "bench llm stream", "steps": [{"name": "llm_call.answer", "input": {"prompt": "Go"}}]}
    answer = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{web.port}/runs", json.dumps(body).encode(),
        {"Content-Type": "application/json"}), timeout=30).read())
    socket = websocket.create_connection(f"ws://127.0.0.1:{web.port}/ws/{answer['runId']}?streams=",
                                         origin=web.origin, timeout=30)
    connected_at = time.time()
    latencies: list[float] = []
    seen = 0
    try:
        while seen < tokens:
            message = json.loads(socket.recv())
            now = time.time()
            if message.get("type") != "llm_chunk":
                continue
            for stamp in STAMP.findall(message["text"]):
                seen += 1
                if float(stamp) > connected_at:  # history sent on connect is not live
                    latencies.append((now - float(stamp)) * 1000)
    finally:
        socket.close()
    with psycopg.connect(url, autocommit=True) as conn:
        rows, seconds = conn.execute(
            "SELECT count(*), extract(epoch FROM max(created_at) - min(created_at))::float8 "
            "FROM llm_stream_chunks").fetchone()
        conn.execute("TRUNCATE llm_stream_chunks")
    return {"stream_chunk_p50_ms": percentile(latencies, 50), "stream_chunk_p99_ms": percentile(latencies, 99),
            "stream_write_tx_per_s": rows / max(seconds, 1e-9), "stream_tokens": float(len(latencies))}


SPECS = {"stream_chunk_p50_ms": ("LLM token: arrival at worker → WebSocket p50", "ms"),
         "stream_chunk_p99_ms": ("LLM token → WebSocket p99", "ms"),
         "stream_write_tx_per_s": ("write cost per streaming step (chunk transactions)", "tx/s")}


def run_llm_stream_bench(server: BenchServer, tokens: int, repeats: int) -> list[Figure]:
    try:
        import websocket  # noqa: F401 - only checking that it is installed
    except ImportError as exc:
        raise Unavailable(f"{exc}: pip install -r requirements-bench.txt") from exc
    samples: list[dict[str, Any]] = []
    stream = PacedStream(tokens)
    url = server.fresh_database("llm_stream")
    workers: list[Process] = []
    web: WebApp | None = None
    try:
        workers = [start_worker(url, "worker-1", {"LLM_BASE_URL": stream.url})]
        wait_workers_registered(url, ["worker-1"], workers)
        web = WebApp(url, LIMITS_RAISED)
        for _ in range(repeats):
            samples.append(measure_stream(url, web, tokens))
    finally:
        if web is not None:
            web.stop()
        for worker in workers:
            worker.stop()
        stream.close()
        server.drop(url)
    note = (f"{tokens} tokens at {TOKENS_PER_SECOND:g}/s per repeat, default flush "
            "(75 ms or 32 tokens); includes batching; each chunk transaction is followed by one async NOTIFY")
    return collect(samples, SPECS, {"stream_chunk_p50_ms": note})
