"""The agent primitives over HTTP against a real gunicorn server: signals (200, 409 for the
second and for 19 of 20 concurrent senders, 404, 400) and re-runs (201 with sourceRunId, 409 on a
running run), with the sender's address audited."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from engine import store
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for


def approval_run() -> dict:
    return make_run(step("tool_call.draft", tool="fetch_data"),
                    {"name": "wait.approve", "input": {"prompt": "Ship it?"}, "dependsOn": ["tool_call.draft"]},
                    step("tool_call.send", ["wait.approve", "tool_call.draft"], tool="notify"), goal="approve via API")


def submit(server, body: dict) -> str:
    status, created = server.json("POST", "/api/runs", body)
    assert status == 201, created
    return created["runId"]


def wait_waiting(module_conn, run_id: str) -> None:
    wait_for(lambda: any(s.status == "waiting" for s in store.run_get(module_conn, run_id).steps), 30,
             "the wait to begin")


def wait_run(server, run_id: str, status: str) -> dict:
    return wait_for(lambda: (b := server.json("GET", f"/api/runs/{run_id}")[1])["status"] == status and b, 30,
                    f"run {run_id} to be {status}")


def test_signal_resolves_the_wait_once_and_records_the_sender(server, module_workers, module_conn):
    run_id = submit(server, approval_run())
    wait_waiting(module_conn, run_id)
    path = f"/api/runs/{run_id}/signals/wait.approve"
    status, body = server.json("POST", path, {"approved": True, "comment": "fine"})
    assert status == 200 and body["status"] == "succeeded" and body["step"] == "wait.approve"
    again, refused = server.json("POST", path, {"approved": False})
    assert again == 409 and "already resolved" in refused["error"]
    run = wait_run(server, run_id, "completed")
    assert next(s for s in run["steps"] if s["name"] == "wait.approve")["output"] == {"approved": True, "comment": "fine"}
    assert [(s.sender, s.accepted) for s in store.signals_for_run(module_conn, run_id)] == [
        ("127.0.0.1", True), ("127.0.0.1", False)]
    assert verify_run(module_conn, run_id) == []


def test_twenty_concurrent_http_signals_get_one_200_and_nineteen_409(server, module_workers, module_conn):
    run_id = submit(server, approval_run())
    wait_waiting(module_conn, run_id)
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda i: server.json("POST", f"/api/runs/{run_id}/signals/wait.approve",
                                                    {"approved": True, "client": i})[0], range(20)))
    assert sorted(codes) == [200] + [409] * 19
    wait_run(server, run_id, "completed")
    assert verify_run(module_conn, run_id) == []


def test_bad_signals_are_refused_clearly(server, module_workers, module_conn):
    run_id = submit(server, approval_run())
    wait_waiting(module_conn, run_id)
    assert server.json("POST", f"/api/runs/{run_id}/signals/wait.nope", {})[0] == 404
    assert server.json("POST", f"/api/runs/{run_id}/signals/tool_call.draft", {})[0] == 409
    assert server.json("POST", f"/api/runs/{run_id}/signals/wait.approve", [1, 2])[0] == 400
    status, _, _ = server.request("POST", f"/api/runs/{run_id}/signals/wait.approve", b"approved=1",
                                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    assert server.json("POST", "/api/runs/00000000-0000-0000-0000-000000000000/signals/wait.approve", {})[0] == 404
    server.json("POST", f"/api/runs/{run_id}/cancel")


def test_rerun_creates_a_linked_run_and_is_refused_while_running(server, module_workers, module_conn):
    run_id = submit(server, make_run(step("tool_call.a", tool="fetch_data", count=2),
                                     step("tool_call.b", ["tool_call.a"], tool="transform")))
    wait_run(server, run_id, "completed")
    status, body = server.json("POST", f"/api/runs/{run_id}/rerun", {"fromStep": "tool_call.b", "input": {"op": "stats"}})
    assert status == 201 and body["sourceRunId"] == run_id and body["page"] == f"/runs/{body['runId']}"
    rerun = wait_run(server, body["runId"], "completed")
    assert rerun["sourceRunId"] == run_id
    assert "items" not in next(s for s in rerun["steps"] if s["name"] == "tool_call.b")["output"]
    assert server.json("POST", f"/api/runs/{run_id}/rerun", {"fromStep": "tool_call.zzz"})[0] == 400
    assert server.json("POST", f"/api/runs/{run_id}/rerun", {"fromStep": "tool_call.b", "extra": 1})[0] == 400

    waiting = submit(server, approval_run())
    status, refused = server.json("POST", f"/api/runs/{waiting}/rerun", {"fromStep": "tool_call.send"})
    assert status == 409 and "still running" in refused["error"]
    server.json("POST", f"/api/runs/{waiting}/cancel")
    for run in (run_id, body["runId"]):
        assert verify_run(module_conn, run) == []
