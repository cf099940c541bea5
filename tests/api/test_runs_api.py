"""The JSON API of the README over HTTP against a real gunicorn server: good input, bad input
(a clear 4xx and nothing stored), and the state changes each endpoint makes."""
from __future__ import annotations

import json
import uuid

import pytest

from engine import store
from tests.helpers import chain, make_run, step, wait_for


def runs_stored(conn) -> int:
    return len(store.run_ids(conn))


def wait_status(server, run_id: str, status: str, timeout: float = 30) -> dict:
    def current() -> dict | None:
        code, body = server.json("GET", f"/api/runs/{run_id}")
        return body if code == 200 and body["status"] == status else None
    return wait_for(current, timeout, f"run {run_id} to be {status}")


@pytest.mark.parametrize("path", ["/runs", "/api/runs"])
def test_submit_creates_a_run_that_workers_complete(server, module_workers, path):
    status, body = server.json("POST", path, make_run(step("tool_call.a", tool="fetch_data"),
                                                      step("llm_call.b", ["tool_call.a"])))
    assert status == 201
    assert body["watch"] == f"/ws/{body['runId']}"
    run = wait_status(server, body["runId"], "completed")
    assert [s["status"] for s in run["steps"]] == ["succeeded", "succeeded"]
    # DESIGN §9's fields, plus (a run with an LLM step) its usage and budget (issue 12).
    assert set(run) == {"id", "goal", "status", "steps", "usage", "budget"}
    assert set(run["steps"][0]) == {"id", "name", "status", "attempt", "maxAttempts", "dependsOn", "output", "error"}
    assert set(run["steps"][1]) == {*run["steps"][0], "usage"}
    assert run["usage"]["totalTokens"] == run["steps"][1]["usage"]["totalTokens"] > 0 and run["budget"] is None
    assert run["steps"][1]["dependsOn"] == ["tool_call.a"] and run["steps"][1]["output"]["summary"]


def test_a_repeated_idempotency_key_returns_the_same_run(server, module_conn):
    body = make_run(step("tool_call.a", tool="fetch_data"), key=f"key-{uuid.uuid4()}")
    first_status, first = server.json("POST", "/runs", body)
    again_status, again = server.json("POST", "/runs", body)
    assert (first_status, again_status) == (201, 200) and first == again
    before = runs_stored(module_conn)
    conflict_status, conflict = server.json("POST", "/runs", {**body, "goal": "something else"})
    assert conflict_status == 409 and "already used" in conflict["error"]
    assert runs_stored(module_conn) == before


BAD_RUNS = {
    "cycle": (make_run(step("tool_call.a", ["tool_call.b"], tool="fetch_data"),
                       step("tool_call.b", ["tool_call.a"], tool="fetch_data")), "cycle"),
    "unknown dependency": (make_run(step("tool_call.a", ["tool_call.ghost"], tool="fetch_data")), "unknown step"),
    "duplicate names": (make_run(step("tool_call.a", tool="fetch_data"), step("tool_call.a", tool="transform")),
                        "duplicate step name"),
    "unknown tool": (make_run(step("tool_call.a", tool="rm_rf")), "unknown tool"),
    "unknown kind": (make_run(step("shell_call.a")), "unknown step kind"),
    "bad name": (make_run(step("no-dot", tool="fetch_data")), "kind.label"),
    "too many steps": (chain(51), "at most 50 steps"),
    "input too big": (make_run(step("tool_call.a", tool="fetch_data", blob="x" * 70_000)), "more than the limit"),
    "not an object": ([1, 2], "JSON object"),
    "no steps": ({"goal": "g", "steps": []}, "non-empty list"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_an_invalid_run_is_a_400_that_names_the_problem_and_stores_nothing(server, module_conn, case):
    body, message = BAD_RUNS[case]
    before = runs_stored(module_conn)
    status, answer = server.json("POST", "/api/runs", body)
    assert status == 400, answer
    assert message in answer["error"]
    assert runs_stored(module_conn) == before


def test_malformed_json_oversized_bodies_and_forms_are_refused(server, module_conn):
    before = runs_stored(module_conn)
    assert server.json("POST", "/runs", raw=b'{"goal": "g", "steps": [')[0] == 400
    assert "malformed JSON" in server.json("POST", "/runs", raw=b"{nope")[1]["error"]
    huge = json.dumps(make_run(step("tool_call.a", tool="fetch_data", blob="x" * 300_000))).encode()
    status, answer = server.json("POST", "/runs", raw=huge)
    assert status == 413 and "larger" in answer["error"]
    status, _, data = server.request("POST", "/runs", b"goal=x", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and b"application/json" in data
    assert runs_stored(module_conn) == before


def test_a_browser_on_another_origin_cannot_use_the_api(server, module_conn):
    before = runs_stored(module_conn)
    status, answer = server.json("POST", "/api/runs", make_run(step("tool_call.a", tool="fetch_data")),
                                 headers={"Origin": "https://evil.example"})
    assert status == 403 and "Cross-site" in answer["error"]
    assert runs_stored(module_conn) == before
    same = server.json("POST", "/api/runs", make_run(step("tool_call.a", tool="fetch_data")),
                       headers={"Origin": server.url})
    assert same[0] == 201


def test_run_status_is_404_for_unknown_or_malformed_ids(server):
    status, body = server.json("GET", f"/api/runs/{uuid.uuid4()}")
    assert status == 404 and "no run" in body["error"]
    assert server.json("GET", "/api/runs/not-a-uuid")[0] == 404


def test_events_come_in_order_and_resume_after_an_id(server, module_workers):
    _, created = server.json("POST", "/runs", make_run(step("tool_call.a", tool="fetch_data"),
                                                       step("tool_call.b", ["tool_call.a"], tool="transform")))
    run_id = created["runId"]
    wait_status(server, run_id, "completed")
    status, events = server.json("GET", f"/api/runs/{run_id}/events")
    assert status == 200
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[0]["type"] == "run_created" and events[-1]["type"] == "run_completed"
    assert set(events[0]) == {"id", "type", "runId", "stepId", "step", "attempt", "worker", "ts", "detail"}
    started = next(e for e in events if e["type"] == "step_started")
    assert started["worker"] in ("worker-1", "worker-2") and started["step"] == "tool_call.a"
    _, rest = server.json("GET", f"/api/runs/{run_id}/events?after={events[2]['id']}")
    assert rest == events[3:]
    assert server.json("GET", f"/api/runs/{run_id}/events?after=-1")[0] == 400
    assert server.json("GET", f"/api/runs/{uuid.uuid4()}/events")[0] == 404


def test_cancel_stops_a_run_once(server, module_workers):
    _, created = server.json("POST", "/runs", make_run(step("tool_call.nap", tool="sleep", seconds=60),
                                                       step("tool_call.after", ["tool_call.nap"], tool="fetch_data")))
    run_id = created["runId"]
    status, body = server.json("POST", f"/api/runs/{run_id}/cancel")
    assert status == 200 and body["status"] == "cancelled" and body["stepsCancelled"] == 2
    assert {s["status"] for s in server.json("GET", f"/api/runs/{run_id}")[1]["steps"]} == {"cancelled"}
    status, body = server.json("POST", f"/api/runs/{run_id}/cancel")
    assert status == 409 and "already cancelled" in body["error"]
    assert server.json("POST", f"/api/runs/{uuid.uuid4()}/cancel")[0] == 404


def test_redrive_reopens_a_failed_run_which_then_completes(server, module_workers):
    _, created = server.json("POST", "/runs", make_run(
        step("tool_call.ok", tool="fetch_data"),
        step("tool_call.flaky", ["tool_call.ok"], tool="fetch_data", failTimes=1, max_attempts=1)))
    run = wait_status(server, created["runId"], "failed")
    dead = next(s for s in run["steps"] if s["status"] == "dead_letter")
    status, body = server.json("POST", f"/api/steps/{dead['id']}/redrive")
    assert status == 200 and body["runId"] == created["runId"]
    run = wait_status(server, created["runId"], "completed")
    assert next(s for s in run["steps"] if s["name"] == "tool_call.ok")["attempt"] == 1
    status, body = server.json("POST", f"/api/steps/{dead['id']}/redrive")
    assert status == 409 and "only a dead-lettered step" in body["error"]
    assert server.json("POST", "/api/steps/99999999/redrive")[0] == 404


def test_workers_are_listed_with_what_they_run(server, module_workers):
    wait_for(lambda: len(server.json("GET", "/api/workers")[1]) == 2, 20, "two workers registered")
    status, workers = server.json("GET", "/api/workers")
    assert status == 200
    assert {w["name"] for w in workers} == {"worker-1", "worker-2"}
    for worker in workers:
        assert set(worker) == {"name", "pid", "host", "status", "lastSeen", "running"}
        assert worker["status"] == "running" and isinstance(worker["running"], list)


def test_healthz_and_metrics_read_the_database(server, module_workers):
    status, body = server.json("GET", "/healthz")
    assert (status, body["status"]) == (200, "ok")
    status, headers, text = server.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    metrics = text.decode()
    for name in ('dae_steps{status="succeeded"}', 'dae_runs{status="completed"}', "dae_oldest_ready_step_age_seconds",
                 "dae_dead_letters", "dae_workers_alive 2.0", "dae_steps_claimable"):
        assert name in metrics
