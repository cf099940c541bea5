"""`llm_call` against a real local OpenAI-compatible HTTP server started by the test: 429 with
Retry-After and 5xx are retried, other 4xx dead-letter at once, the answer becomes the output."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import store
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for


class ScriptedLLM:
    """Answers /chat/completions with a scripted list of (status, headers, body)."""

    def __init__(self, script: list[tuple[int, dict, dict]]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


ANSWER = {"choices": [{"message": {"role": "assistant", "content": "Three sources agree on latency."}}]}


@pytest.fixture
def llm_server():
    servers = []

    def start(script):
        server = ScriptedLLM(script)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.server.shutdown()


def finished(conn, run_id):
    return wait_for(lambda: (r := store.run_get(conn, run_id)).status != "running" and r, 60, "run to finish")


def test_rate_limit_and_server_error_are_retried_then_the_answer_is_the_output(conn, settings, spawn, llm_server):
    server = llm_server([(429, {"Retry-After": "0"}, {"error": "slow down"}), (503, {}, {"error": "busy"}),
                         (200, {}, ANSWER)])
    body = make_run(step("tool_call.fetch", tool="fetch_data"),
                    step("llm_call.summarize", ["tool_call.fetch"], prompt="Summarize"))
    run_id, _ = submit_run(conn, body, settings)
    spawn("w-llm", LLM_BASE_URL=server.url, LLM_API_KEY="sk-test", LLM_MODEL="tiny")
    run = finished(conn, run_id)
    assert run.status == "completed"
    llm = next(s for s in run.steps if s.name == "llm_call.summarize")
    assert llm.attempt == 3
    usage = llm.output.pop("usage")
    assert llm.output == {"summary": "Three sources agree on latency.", "model": "tiny", "provider": "http"}
    # No usage from this server: counted (5 words and a period).
    assert usage["completionTokens"] == 6 and usage["promptTokens"] > 0
    assert llm.attempt_limit == 5 + 1, "the 429's attempt was given back (the key was paused instead)"
    retries = [e.detail for e in store.events_after(conn, run_id) if e.type == "step_retry_scheduled"]
    assert "429" in retries[0]["error"] and retries[0]["delaySeconds"] == 0
    assert "503" in retries[1]["error"]
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert first["headers"]["Idempotency-Key"] == f"{run_id}:llm_call.summarize"
    assert first["body"]["model"] == "tiny" and "tool_call.fetch" in first["body"]["messages"][1]["content"]
    assert verify_run(conn, str(run_id)) == []


def test_client_error_is_permanent_and_dead_letters_at_once(conn, settings, spawn, llm_server):
    server = llm_server([(400, {}, {"error": {"message": "bad model"}})])
    run_id, _ = submit_run(conn, make_run(step("llm_call.summarize", prompt="Summarize", max_attempts=5)), settings)
    spawn("w-llm", LLM_BASE_URL=server.url)
    run = finished(conn, run_id)
    assert run.status == "failed"
    assert run.steps[0].attempt == 1 and "permanent" in run.steps[0].error
    assert len(server.requests) == 1
