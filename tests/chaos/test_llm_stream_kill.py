"""kill -9 of the worker in the middle of an LLM step's stream: the killed attempt's text stays,
marked interrupted, on the run page and in `GET /api/steps/<id>/stream`; the next attempt (another
worker) streams the whole answer again after it; the audit log verifies."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import store
from engine.store.streams import stream_read
from engine.submit import submit_run
from tests.chaos.support import assert_invariants, by_name, kill_and_time, wait_event, wait_registered, wait_terminal
from tests.helpers import make_run, step, wait_for
from tests.web.support import WebServer

pytestmark = pytest.mark.chaos

SLOW = {"LLM_OFFLINE_TOKENS_PER_SECOND": "20", "LLM_STREAM_FLUSH_SECONDS": "0.05"}


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[WebServer]:
    server = WebServer(db_url, tmp_path).start()
    yield server
    server.stop()


def test_a_killed_attempts_partial_text_is_shown_interrupted_and_the_next_attempt_streams_fresh(
        conn, settings, spawn, web):
    procs = [spawn("w1", 2, **SLOW), spawn("w2", 2, **SLOW)]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, make_run(
        step("tool_call.fetch", tool="fetch_data", query="postgres queues", count=12),
        step("llm_call.summarize", ["tool_call.fetch"], prompt="Summarize the findings"),
        goal="Research and summarize"), settings)
    llm_id = store.run_get(conn, str(run_id)).steps[1].id
    started = wait_event(conn, run_id, "step_started", where=lambda e: e.step_id == llm_id)
    wait_for(lambda: stream_read(conn, [llm_id])[0].end >= 40, 30, "some text streamed by attempt 1")
    kill_and_time(by_name(procs, started.worker))
    assert wait_terminal(conn, [run_id], 60)[str(run_id)] == "completed"

    summary = store.run_get(conn, str(run_id)).steps[1].output["summary"]
    status, body = web.json("GET", f"/api/steps/{llm_id}/stream")
    assert status == 200
    first, second = body["parts"]
    assert (first["attempt"], first["state"], first["offset"]) == (1, "interrupted", 0)
    assert 40 <= len(first["text"]) < len(summary) and summary.startswith(first["text"])
    assert (second["attempt"], second["state"], second["offset"]) == (2, "complete", len(first["text"]))
    assert second["text"] == summary
    page = web.request("GET", f"/runs/{run_id}")[2].decode()
    assert 'data-attempt="1" data-state="interrupted"' in page and "attempt 1 · interrupted" in page
    assert 'data-attempt="2" data-state="complete"' in page
    assert_invariants(conn, [run_id])
