"""The example research agent end to end: a local HTTP server started by the test serves the pages,
a temp folder holds the documents, and `python -m examples.research_agent --start-worker` (the
one-command way) runs it on a real worker with the agent's tools; then the tools' edges (size cap,
timeouts, permanent and transient HTTP errors) against the same server."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable_agent import PermanentError, StepContext
from engine import store
from engine.config import Settings
from engine.model import RunStatus
from examples.research_agent.tools import MAX_FETCH_BYTES, doc_search, http_fetch, rank
from tests.chaos.support import assert_invariants, run_events
from tests.helpers import FAST_ENV, ROOT

PAGES = {
    "/durability": ("text/html", "<html><head><title>Durable queues</title><style>p{}</style></head><body>"
                    "<p>Postgres queues use SKIP LOCKED so each job is claimed once; leases and fencing "
                    "tokens make a crashed worker's job safe to retry.</p></body></html>"),
    "/latency": ("text/plain", "Hand-off latency of a Postgres queue is dominated by commit and NOTIFY."),
    "/huge": ("text/plain", "queue " * 100_000),
}


class Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path == "/flaky" and Handler.hits[self.path] == 1:
            self.send_error(503)
            return
        if self.path == "/flaky":
            self.path = "/latency"
        if self.path == "/slow":
            threading.Event().wait(2)  # longer than the step's fetch timeout below; then hang up
            return
        if self.path not in PAGES:
            self.send_error(404)
            return
        content_type, body = PAGES[self.path]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "fencing.md").write_text("# Fencing\nA fencing token (the attempt number) stops a zombie worker's "
                                       "late write. Queues reclaim a crashed worker's job.")
    (folder / "cooking.txt").write_text("Boil the pasta for nine minutes.")
    return folder


def context(**input_: object) -> StepContext:
    return StepContext(run_id=uuid.uuid4(), step_name="tool_call.t", input=dict(input_), parents={}, attempt=1,
                       settings=Settings.from_env({}))


def test_the_research_agent_answers_from_pages_and_documents(conn, db_url, site, docs):
    env = {**os.environ, **FAST_ENV, "DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-m", "examples.research_agent", "How do Postgres queues survive a crashed worker?",
         "--url", f"{site}/durability", "--url", f"{site}/flaky", "--docs", str(docs), "--start-worker",
         "--timeout", "120"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.splitlines()[0].removeprefix("run ")
    assert "completed: Answer the question from the ranked sources" in done.stdout
    assert "step_log tool_call.fetch_1 fetched" in done.stdout

    run = store.run_get(conn, run_id)
    steps = {s.name: s for s in run.steps}
    assert run.status == RunStatus.COMPLETED
    assert steps["tool_call.fetch_1"].output["title"] == "Durable queues"
    assert steps["tool_call.fetch_2"].attempt == 2  # the 503 was retried
    assert [i["id"] for i in steps["tool_call.search_docs"].output["items"]] == ["fencing.md"]
    ranked = steps["tool_call.rank"].output
    assert ranked["considered"] == 3 and ranked["items"][0]["score"] >= ranked["items"][-1]["score"]
    assert set(ranked["sources"]) == {f"{site}/durability", f"{site}/flaky", "fencing.md"}
    assert "3 item(s)" in steps["llm_call.answer"].output["summary"]
    assert {e.worker for e in run_events(conn, run_id, "step_started")} == {w.name for w in
                                                                          store.workers_list(conn, include_gone=True)}
    assert_invariants(conn, [run_id])


def test_fetch_caps_size_and_time_and_classifies_http_errors(site):
    huge = http_fetch(context(url=f"{site}/huge", query="queue"))
    assert huge["truncated"] and huge["bytes"] == MAX_FETCH_BYTES
    with pytest.raises(RuntimeError, match="unreachable"):
        http_fetch(context(url=f"{site}/slow", timeoutSeconds=0.3))
    with pytest.raises(PermanentError, match="404"):
        http_fetch(context(url=f"{site}/missing"))
    with pytest.raises(PermanentError, match="not an http"):
        http_fetch(context(url="file:///etc/passwd"))


def test_search_and_rank_order_by_relevance(docs):
    found = doc_search(context(folder=str(docs), query="fencing zombie"))
    assert found["searched"] == 2 and [i["id"] for i in found["items"]] == ["fencing.md"]
    with pytest.raises(PermanentError):
        doc_search(context(folder=str(docs / "nope"), query="x"))
    ctx = context(query="fencing zombie", n=1)
    ctx.parents = {"tool_call.a": {"items": [{"id": "x", "text": "nothing"}, {"id": "y", "text": "fencing zombie"}]}}
    assert rank(ctx)["items"][0]["id"] == "y"
