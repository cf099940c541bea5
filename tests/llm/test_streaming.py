"""LLM steps stream: text is stored in batches per attempt while it arrives (from the local
OpenAI-compatible server, or the offline model at its pace), usage and cost are recorded, a stream
that breaks mid-way shows as interrupted and the retry starts fresh."""
from __future__ import annotations

import pytest

from bench.fake_llm import DEFAULT_TEXT, FakeLLM, Reply
from engine import store
from engine.model import StreamState
from engine.store.streams import run_usage, stream_read
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for


def start_server(servers: list[FakeLLM], *script: Reply, default: Reply | None = None) -> FakeLLM:
    server = FakeLLM(list(script), default)
    servers.append(server)
    return server


def finished(conn, run_id):
    return wait_for(lambda: (r := store.run_get(conn, run_id)).status != "running" and r, 60, "run to finish")


def chunk_rows(conn, step_id: int) -> list[dict]:
    return conn.execute("SELECT attempt, start_offset, text, final FROM llm_stream_chunks WHERE step_id = %s "
                        "ORDER BY start_offset", (step_id,)).fetchall()


def test_provider_stream_is_stored_in_batches_with_the_providers_usage_and_its_cost(conn, settings, spawn, fake_llm):
    server = start_server(fake_llm, default=Reply.ok(tokens_per_second=200))
    run_id, _ = submit_run(conn, make_run(step("llm_call.summarize", prompt="Summarize")), settings)
    spawn("w-llm", LLM_BASE_URL=server.url, LLM_MODEL="tiny", LLM_PRICES="tiny=0.5/2",
          LLM_STREAM_FLUSH_SECONDS="0.05", LLM_STREAM_FLUSH_TOKENS="8")
    run = finished(conn, run_id)
    assert run.status == "completed"
    llm = run.steps[0]
    assert llm.output["summary"] == DEFAULT_TEXT and llm.output["model"] == "tiny"
    request = server.requests[0]["body"]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    rows = chunk_rows(conn, llm.id)
    words = len(DEFAULT_TEXT.split())
    assert 1 < len(rows) < words, "batched: more than one transaction, fewer than one per token"
    assert "".join(r["text"] for r in rows) == DEFAULT_TEXT and [r["final"] for r in rows][-1] is True
    [stream] = stream_read(conn, [llm.id])
    assert [(p.attempt, p.offset, p.text, p.state) for p in stream.parts] == [(1, 0, DEFAULT_TEXT, StreamState.COMPLETE)]
    usage = run_usage(conn, run_id)
    assert usage.total.completion_tokens == words and usage.total.prompt_tokens > 0
    expected = usage.total.prompt_tokens / 1000 * 0.5 + words / 1000 * 2
    assert usage.total.cost_usd == pytest.approx(expected, rel=1e-6)
    assert llm.output["usage"]["completionTokens"] == words
    assert verify_run(conn, str(run_id)) == []


def test_a_stream_broken_mid_way_is_interrupted_and_the_retry_streams_fresh(conn, settings, spawn, fake_llm):
    server = start_server(fake_llm, Reply.broken(after_words=5), Reply.server_error(502), default=Reply.ok())
    run_id, _ = submit_run(conn, make_run(step("llm_call.summarize", prompt="Summarize")), settings)
    spawn("w-llm", LLM_BASE_URL=server.url, LLM_STREAM_FLUSH_TOKENS="2")
    run = finished(conn, run_id)
    assert run.status == "completed" and run.steps[0].attempt == 3
    [stream] = stream_read(conn, [run.steps[0].id])
    partial = " ".join(DEFAULT_TEXT.split(" ")[:5]) + " "
    assert [(p.attempt, p.offset, p.text, p.state) for p in stream.parts] == [
        (1, 0, partial, StreamState.INTERRUPTED),
        (3, len(partial), DEFAULT_TEXT, StreamState.COMPLETE)]
    errors = [e.detail["error"] for e in store.events_after(conn, run_id) if e.type == "step_retry_scheduled"]
    assert "[DONE]" in errors[0] and "502" in errors[1]
    # Resuming from any offset gives exactly the rest.
    [tail] = stream_read(conn, [run.steps[0].id], offsets={run.steps[0].id: 3})
    assert "".join(p.text for p in tail.parts) == (partial + DEFAULT_TEXT)[3:]
    assert verify_run(conn, str(run_id)) == []


def test_the_offline_model_streams_word_by_word_and_counts_its_own_tokens(conn, settings, spawn):
    run_id, _ = submit_run(conn, make_run(step("tool_call.fetch", tool="fetch_data"),
                                          step("llm_call.summarize", ["tool_call.fetch"], prompt="Summarize")), settings)
    spawn("w-offline", LLM_OFFLINE_TOKENS_PER_SECOND="400", LLM_STREAM_FLUSH_SECONDS="0.02")
    run = finished(conn, run_id)
    llm = run.steps[1]
    assert run.status == "completed" and llm.output["provider"] == "offline"
    rows = chunk_rows(conn, llm.id)
    assert len(rows) > 1 and "".join(r["text"] for r in rows) == llm.output["summary"]
    usage = run_usage(conn, run_id)
    assert usage.steps[llm.id].completion_tokens == llm.output["usage"]["completionTokens"] > 10
    assert usage.total.cost_usd > 0 and usage.total.model == "offline-extractive-1"
    assert verify_run(conn, str(run_id)) == []
