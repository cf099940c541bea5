"""`python -m engine ...` as a user runs it: real subprocesses against the test database."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from engine import store
from tests.helpers import ROOT, chain, make_run, step, wait_for


def cli(db_url: str, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, input=stdin, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, "DATABASE_URL": db_url})


def test_submit_status_events_and_verify(db_url, conn, spawn):
    submitted = cli(db_url, "submit", "-", stdin=json.dumps(chain(3)))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    spawn("w1")
    watched = cli(db_url, "watch", run_id)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert sum("step_succeeded" in line for line in lines) == 3
    assert lines[-1] == f"run {run_id} completed" and any("run_completed" in line for line in lines)

    status = json.loads(cli(db_url, "status", run_id).stdout)
    assert status["status"] == "completed" and [s["status"] for s in status["steps"]] == ["succeeded"] * 3
    assert set(status["steps"][0]) == {"id", "name", "status", "attempt", "maxAttempts", "dependsOn", "output", "error"}
    events = [json.loads(line) for line in cli(db_url, "events", run_id).stdout.splitlines()]
    assert events[0]["type"] == "run_created" and events[-1]["type"] == "run_completed"
    assert set(events[0]) == {"id", "type", "runId", "stepId", "step", "attempt", "worker", "ts", "detail"}
    verified = cli(db_url, "verify", run_id)
    assert verified.returncode == 0 and "every invariant holds" in verified.stdout


def test_verify_fails_when_the_record_is_tampered_with(db_url, conn, spawn):
    run_id = cli(db_url, "submit", "-", stdin=json.dumps(chain(2))).stdout.strip()
    spawn("w1")
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "run completed")
    conn.execute("UPDATE steps SET attempt = 7 WHERE run_id = %s AND name = 'tool_call.s1'", (run_id,))
    verified = cli(db_url, "verify")
    assert verified.returncode == 1
    assert "tool_call.s1" in verified.stdout and "attempt 7" in verified.stdout


def test_cancel_and_redrive(db_url, conn, spawn):
    run_id = cli(db_url, "submit", "-", stdin=json.dumps(make_run(step("tool_call.x", tool="sleep", seconds=60)))).stdout.strip()
    cancelled = cli(db_url, "cancel", run_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = cli(db_url, "cancel", run_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr

    doomed = make_run(step("tool_call.d", tool="fetch_data", failTimes=1, max_attempts=1))
    run2 = cli(db_url, "submit", "-", stdin=json.dumps(doomed)).stdout.strip()
    spawn("w1")
    wait_for(lambda: store.run_get(conn, run2).status == "failed", 30, "run failed")
    step_id = store.run_get(conn, run2).steps[0].id
    redriven = cli(db_url, "redrive", str(step_id))
    assert redriven.returncode == 0, redriven.stderr
    wait_for(lambda: store.run_get(conn, run2).status == "completed", 30, "redriven run completed")


def test_errors_go_to_stderr_with_a_non_zero_exit(db_url, tmp_path):
    unknown = cli(db_url, "status", "not-a-run")
    assert unknown.returncode == 1 and "no run not-a-run" in unknown.stderr and unknown.stdout == ""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(make_run(step("tool_call.a", ["tool_call.missing"], tool="fetch_data"))))
    invalid = cli(db_url, "submit", str(bad))
    assert invalid.returncode == 1 and "depends on unknown step 'tool_call.missing'" in invalid.stderr
    garbage = cli(db_url, "submit", "-", stdin="{not json")
    assert garbage.returncode == 1 and "not valid JSON" in garbage.stderr
    down = cli("postgresql://postgres@127.0.0.1:1/none", "status", "x")
    assert down.returncode == 2 and "database unavailable" in down.stderr
