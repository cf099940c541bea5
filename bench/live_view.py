"""Live view: a step's commit → its event at a WebSocket client of `WS /ws/<run_id>`.

A chain whose steps each take a few tens of milliseconds (so events arrive one transition at a time,
as with real tool and LLM calls) runs while a client listens. For every event the client receives
live, latency = receive time − the commit time of the audit row's transaction
(`pg_xact_commit_timestamp`, or `created_at` = the transaction's start when commit timestamps are
off, which overstates it). Server and client share this machine's clock.
"""
from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from bench.appliance import Appliance
from bench.figures import Figure, Unavailable, collect, percentile
from bench.server import BenchServer

FIRST_STEP_SECONDS = 0.5   # time for the client to connect before the run moves
STEP_SECONDS = 0.05        # each step's handler time: one transition at a time


def chain_body(length: int) -> dict[str, Any]:
    steps = []
    for i in range(length):
        step: dict[str, Any] = {"name": f"tool_call.s{i}", "input": {
            "tool": "fetch_data", "count": 1, "sleepSeconds": FIRST_STEP_SECONDS if i == 0 else STEP_SECONDS}}
        if i:
            step["dependsOn"] = [f"tool_call.s{i - 1}"]
        steps.append(step)
    return {"goal": "bench live view", "steps": steps}


def measure_live(appliance: Appliance, steps: int, commit_timestamps: bool) -> dict[str, float]:
    try:
        import websocket
    except ImportError as exc:
        raise Unavailable(f"{exc}: pip install -r requirements-bench.txt") from exc
    assert appliance.web is not None
    status, answer = appliance.post_json("/runs", chain_body(steps))
    if status != 201:
        raise RuntimeError(f"POST /runs answered {status}: {answer}")
    socket = websocket.create_connection(f"ws://127.0.0.1:{appliance.web.port}/ws/{answer['runId']}",
                                         origin=appliance.web.origin, timeout=5)
    connected_at = time.time()
    received: dict[int, float] = {}
    deadline = time.monotonic() + 30 + steps * STEP_SECONDS * 4
    try:
        finished = False
        while not finished and time.monotonic() < deadline:
            message = socket.recv()
            now = time.time()
            for event in _events(message):
                received.setdefault(event["id"], now)
                finished = finished or event.get("type") in ("run_completed", "run_failed")
    finally:
        socket.close()
    if not finished:
        raise RuntimeError("the run's completion never arrived over the WebSocket")
    latencies = [(received[i] - committed) * 1000 for i, committed in _commit_times(
        appliance.url, list(received), commit_timestamps).items() if committed > connected_at]
    if not latencies:
        raise RuntimeError("no live events were received after connecting")
    return {"live_p50_ms": percentile(latencies, 50), "live_p99_ms": percentile(latencies, 99),
            "live_events": float(len(latencies))}


def _events(message: str | bytes) -> list[dict[str, Any]]:
    """The events in one message: an event, a list of them, or an object holding `events`."""
    try:
        data = json.loads(message)
    except ValueError:
        return []
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    items = data if isinstance(data, list) else [data]
    return [e for e in items if isinstance(e, dict) and isinstance(e.get("id"), int) and "type" in e]


def _commit_times(url: str, ids: list[int], commit_timestamps: bool) -> dict[int, float]:
    stamp = "pg_xact_commit_timestamp(xmin)" if commit_timestamps else "created_at"
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id, extract(epoch FROM {stamp})::float8 FROM audit_log WHERE id = ANY(%s)",
                            (ids,)).fetchall()
    return {row[0]: row[1] for row in rows}


SPECS = {"live_p50_ms": ("live view: commit → WebSocket p50", "ms"),
         "live_p99_ms": ("live view p99", "ms")}


def run_live_bench(server: BenchServer, steps: int, repeats: int, commit_timestamps: bool) -> list[Figure]:
    samples = []
    for _ in range(repeats):
        with Appliance(server, "live") as appliance:
            samples.append(measure_live(appliance, steps, commit_timestamps))
    clock = "pg_xact_commit_timestamp" if commit_timestamps else "created_at = now() (commit timestamps off)"
    count = int(samples[0]["live_events"]) if samples else 0
    return collect(samples, SPECS, {"live_p50_ms": f"{count} live events per repeat; clock: {clock}"})
