"""Streamed text over HTTP and WebSocket: `GET /api/steps/<id>/stream?offset=N` returns exactly the
text after N with the attempt of each part, and a `WS /ws/<run_id>?streams=` client that goes away
for 2 s mid-stream resumes with `?after=&streams=` and misses nothing, duplicates nothing."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import websocket

from engine import store
from engine.store.provider_limits import limit_pause, limits_configure, parse_limits
from engine.store.streams import stream_read
from engine.verify import verify_run
from tests.helpers import WorkerProcess, make_run, step, wait_for

SLOW = {"LLM_OFFLINE_TOKENS_PER_SECOND": "25", "LLM_STREAM_FLUSH_SECONDS": "0.05"}


@pytest.fixture(scope="module")
def slow_worker(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(module_db_url, "w-stream", 4, env=SLOW, log_dir=tmp_path_factory.mktemp("w"))
    yield worker
    worker.stop()


def research_run() -> dict:
    return make_run(step("tool_call.fetch", tool="fetch_data", query="postgres queues", count=12),
                    step("tool_call.clean", ["tool_call.fetch"], tool="transform"),
                    step("llm_call.summarize", ["tool_call.clean"], prompt="Summarize the findings"),
                    goal="Research and summarize")


def stored_end(conn, step_id: int) -> int:
    [stream] = stream_read(conn, [step_id])
    return stream.end


def receive(ws: websocket.WebSocket, events: list[dict], chunks: list[dict], until: callable) -> None:
    while not until():
        message = json.loads(ws.recv())
        (chunks if message["type"] == "llm_chunk" else events).append(message)


def test_a_socket_away_for_two_seconds_mid_stream_resumes_without_gap_or_duplicate(server, slow_worker, module_conn):
    _, created = server.json("POST", "/runs", research_run())
    run_id = created["runId"]
    llm_id = store.run_get(module_conn, run_id).steps[2].id
    events: list[dict] = []
    chunks: list[dict] = []
    ws = websocket.create_connection(server.ws_url(f"/ws/{run_id}?streams="), timeout=30)
    receive(ws, events, chunks, lambda: len(chunks) >= 3)
    ws.close()
    have = chunks[-1]["offset"] + len(chunks[-1]["text"])
    away = time.monotonic()
    wait_for(lambda: time.monotonic() - away >= 2 and stored_end(module_conn, llm_id) > have + 20, 30,
             "two seconds away while the step streams on")
    ws = websocket.create_connection(
        server.ws_url(f"/ws/{run_id}?after={events[-1]['id']}&streams={llm_id}:{have}"), timeout=30)
    try:
        def done() -> bool:
            run = store.run_get(module_conn, run_id)
            text = "".join(c["text"] for c in chunks)
            return run.terminal and any(e["type"] == "run_completed" for e in events) \
                and len(text) >= len(run.steps[2].output["summary"])
        receive(ws, events, chunks, done)
    finally:
        ws.close()
    summary = store.run_get(module_conn, run_id).steps[2].output["summary"]
    position = 0
    for chunk in chunks:
        assert chunk["stepId"] == llm_id and chunk["attempt"] == 1
        assert chunk["offset"] == position, "each chunk starts where the previous one ended"
        position += len(chunk["text"])
    assert "".join(c["text"] for c in chunks) == summary
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    assert verify_run(module_conn, run_id) == []


def test_the_stream_endpoint_returns_the_text_after_an_offset_with_its_attempt(server, slow_worker, module_conn):
    _, created = server.json("POST", "/runs", research_run())
    run_id = created["runId"]
    llm_id = store.run_get(module_conn, run_id).steps[2].id
    wait_for(lambda: stored_end(module_conn, llm_id) > 0, 30, "the first streamed text")
    status, first = server.json("GET", f"/api/steps/{llm_id}/stream")
    assert status == 200 and first["parts"] and first["parts"][0]["state"] in ("streaming", "complete")
    wait_for(lambda: store.run_get(module_conn, run_id).terminal, 60, "run to finish")
    summary = store.run_get(module_conn, run_id).steps[2].output["summary"]
    status, rest = server.json("GET", f"/api/steps/{llm_id}/stream?offset={first['nextOffset']}")
    assert status == 200 and first["text"] + rest["text"] == summary
    assert rest["offset"] == first["nextOffset"] and rest["nextOffset"] == len(summary)
    assert {(p["attempt"], p["state"]) for p in rest["parts"]} == {(1, "complete")}
    status, empty = server.json("GET", f"/api/steps/{llm_id}/stream?offset={len(summary)}")
    assert empty["parts"] == [] and empty["nextOffset"] == len(summary)
    assert server.json("GET", f"/api/steps/{llm_id}/stream?offset=-1")[0] == 400
    assert server.json("GET", "/api/steps/999999999/stream")[0] == 404
    status, run = server.json("GET", f"/api/runs/{run_id}")
    assert run["usage"]["completionTokens"] > 0 and run["usage"]["costUsd"] > 0
    metrics = server.request("GET", "/metrics")[2].decode()
    assert 'dae_llm_tokens_total{kind="completion",model="offline-extractive-1"}' in metrics \
        or 'dae_llm_tokens_total{model="offline-extractive-1",kind="completion"}' in metrics
    assert 'dae_llm_cost_usd_total{model="offline-extractive-1"}' in metrics
    assert verify_run(module_conn, run_id) == []


def test_the_run_page_says_plainly_that_a_run_was_stopped_for_its_budget(server, slow_worker, module_conn):
    body = research_run()
    body["steps"].append(step("llm_call.again", ["llm_call.summarize"], prompt="Once more"))
    body["budget"] = {"tokens": 50}
    _, created = server.json("POST", "/runs", body)
    run_id = created["runId"]
    wait_for(lambda: store.run_get(module_conn, run_id).terminal, 60, "run to stop")
    status, run = server.json("GET", f"/api/runs/{run_id}")
    assert run["status"] == "failed" and run["budget"] == {"tokens": 50, "usd": None, "exceeded": True}
    page = server.request("GET", f"/runs/{run_id}")[2].decode()
    assert "Budget exceeded: this run was stopped before its next LLM step." in page
    assert "budget exceeded" in page  # the run_failed event's reason in the log
    assert verify_run(module_conn, run_id) == []


def test_the_dashboard_shows_each_limits_use_and_its_pause(server, module_conn):
    limits_configure(module_conn, parse_limits(json.dumps({"llm:dash": {"concurrency": 3, "requestsPerMinute": 60}})))
    _, created = server.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data"), goal="pause owner"))
    run = store.run_get(module_conn, created["runId"])
    assert limit_pause(module_conn, "llm:dash", 30, run.id, run.steps[0].id, 1) is True
    assert limit_pause(module_conn, "llm:dash", 30, run.id, run.steps[0].id, 1) is False, "one event per pause"
    page = server.request("GET", "/")[2].decode()
    row = page[page.index('data-limit="llm:dash"'):]
    row = row[:row.index("</tr>")]
    assert "0 / 3" in row and "/ 60 req" in row and "paused" in row
    assert [e.type for e in store.events_after(module_conn, run.id)].count("limit_paused") == 1
