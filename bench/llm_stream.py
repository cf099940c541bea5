"""LLM streaming: a token's arrival at the worker → its appearance at a WebSocket client of
`WS /ws/<run_id>?streams=`, and what streaming costs in write transactions.

The local OpenAI-compatible server (`bench.fake_llm`, the tests' too) streams at a provider's pace
(30 tokens/s); each token carries the wall-clock time it was written to the socket (on this machine, within a fraction of a
millisecond of its arrival at the worker), so latency = client receive time − that stamp. It
includes the worker's batching (LLM_STREAM_FLUSH_SECONDS, default 75 ms), the commit, the NOTIFY,
the web process's read and the socket. The write cost is the chunk transactions a streaming step
commits per second (each is followed by one asynchronous-commit NOTIFY statement).
"""
from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import psycopg

from bench.appliance import LIMITS_RAISED
from bench.fake_llm import FakeLLM, Reply
from bench.figures import Figure, Unavailable, collect, percentile
from bench.processes import Process, WebApp, start_worker, wait_workers_registered
from bench.server import BenchServer

TOKENS_PER_SECOND = 30.0
STAMP = re.compile(r"\[(\d+\.\d+)\]")


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
    stream = FakeLLM(default=Reply.stamped_words(tokens, TOKENS_PER_SECOND))
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
