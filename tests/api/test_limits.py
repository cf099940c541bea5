"""Limits of a public demo: per-client rate limits that hold across web processes (they are kept in
Postgres), the active-run cap, the request body cap; and a web app whose database is down."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import store
from tests.helpers import make_run, step
from tests.web.support import WebServer


@pytest.fixture
def servers(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[WebServer]]:
    env = request.param
    started = [WebServer(db_url, tmp_path, **env).start() for _ in range(2)]
    yield started
    for web in started:
        web.stop()


def run() -> dict:
    return make_run(step("tool_call.a", tool="sleep", seconds=60))


@pytest.mark.parametrize("servers", [{"SUBMITS_PER_WINDOW": "3", "RATE_WINDOW_SECONDS": "600"}], indirect=True)
def test_the_submit_limit_counts_a_client_across_web_processes(servers, conn):
    first, second = servers
    assert [first.json("POST", "/runs", run())[0] for _ in range(2)] == [201, 201]
    assert second.json("POST", "/runs", run())[0] == 201
    status, headers, body = second.request("POST", "/runs", b'{"goal": "g", "steps": []}',
                                           {"Content-Type": "application/json"})
    assert status == 429 and int(headers["Retry-After"]) >= 1 and b"too many submit requests" in body
    assert first.json("POST", "/runs", run())[0] == 429
    assert len(store.run_ids(conn)) == 3


@pytest.mark.parametrize("servers", [{"KILLS_PER_WINDOW": "1", "RATE_WINDOW_SECONDS": "600"}], indirect=True)
def test_kill_requests_are_rate_limited(servers):
    first, second = servers
    assert first.json("POST", "/api/workers/nobody/kill")[0] == 404
    status, body = second.json("POST", "/api/workers/nobody/kill")
    assert status == 429 and "too many kill requests" in body["error"]


@pytest.mark.parametrize("servers", [{"MAX_ACTIVE_RUNS_PER_CLIENT": "1"}], indirect=True)
def test_a_client_with_too_many_active_runs_must_wait(servers, conn):
    assert servers[0].json("POST", "/runs", run())[0] == 201
    status, body = servers[1].json("POST", "/runs", run())
    assert status == 429 and "active runs" in body["error"]
    assert len(store.run_ids(conn)) == 1


@pytest.mark.parametrize("servers", [{"MAX_BODY_BYTES": "2000"}], indirect=True)
def test_the_body_cap_is_configurable(servers):
    small, _ = servers
    assert small.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data", note="x" * 2500)))[0] == 413
    assert small.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data")))[0] == 201


def test_without_a_database_the_app_still_starts_and_health_says_503(pg, tmp_path):
    web = WebServer(pg.url("no_such_database"), tmp_path).start(healthy_status=503)
    try:
        status, body = web.json("GET", "/healthz")
        assert status == 503 and body["status"] == "unavailable"
        status, _, page = web.request("GET", "/")
        assert status == 503 and b"Error id" in page and b"no_such_database" not in page
    finally:
        web.stop()
