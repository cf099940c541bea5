"""The appliance as one hostile visitor sees it (issue 13): crash steps submitted through the public
API must never stop the appliance, whatever supervisord's start checks would make of a worker that
dies a moment after it started, while another visitor's run completes meanwhile.

Boots scripts/run like test_appliance_boot.py (whose harness this reuses), with CLIENT_IP_HEADER
set so the test can speak as several visitors.
"""
from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.appliance.test_appliance_boot import (  # noqa: F401 - fixtures
    BOOT_SECONDS,
    REPO,
    Appliance,
    boot,
    data_dir,
)

CLIENT_HEADER = "X-Test-Client"


def request(appliance: Appliance, method: str, path: str, body: Any = None, client: str = "visitor") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{appliance.port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", CLIENT_HEADER: client})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def engine_verify(appliance: Appliance) -> subprocess.CompletedProcess[str]:
    """`python -m engine verify` against the appliance's own database (over its unix socket)."""
    url = f"postgresql://app@/agent?host={appliance.data_dir}/run&port={appliance.environment['PGPORT']}"
    return subprocess.run([sys.executable, "-m", "engine", "verify"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url}, timeout=60, check=False)


def crash_step(name: str, attempts: int) -> dict[str, Any]:
    return {"name": f"tool_call.{name}", "input": {"tool": "fetch_data", "crash": True}, "maxAttempts": attempts}


@pytest.mark.timeout(300)
def test_crash_steps_from_the_public_api_never_stop_the_appliance(
    boot: Callable[..., Appliance],  # noqa: F811 - the fixture imported above
) -> None:
    appliance = boot(CLIENT_IP_HEADER=CLIENT_HEADER)
    appliance.wait_for("GET /healthz to answer 200", appliance.is_healthy, BOOT_SECONDS)
    appliance.wait_for("both workers to be listed", lambda: {"worker-1", "worker-2"} <= set(appliance.workers()))

    # The probe: 50 crash steps in one run are refused outright.
    status, body = request(appliance, "POST", "/api/runs",
                           {"goal": "crash 50", "steps": [crash_step(f"c{i}", 1) for i in range(50)]}, "attacker")
    assert status == 400 and "crash" in body["error"], body

    # Within the per-run bound, crash steps still kill workers again and again, each time a
    # moment after the worker (re)started: sooner than supervisord's start check would wait. Four
    # attackers fill their active-run caps with them.
    crash_runs = []
    for attacker in range(4):
        for i in range(20):
            status, body = request(appliance, "POST", "/api/runs", {"goal": f"crash {i}", "steps": [
                crash_step("boom", 5)]}, f"attacker-{attacker}")
            assert status == 201, body
            crash_runs.append(body["runId"])
    status, body = request(appliance, "POST", "/api/runs", {"goal": "bystander", "steps": [
        {"name": "tool_call.a", "input": {"tool": "fetch_data"}},
        {"name": "tool_call.b", "input": {"tool": "transform"}, "dependsOn": ["tool_call.a"]},
        {"name": "llm_call.c", "input": {"prompt": "sum up"}, "dependsOn": ["tool_call.b"]}]}, "bystander")
    assert status == 201, body
    bystander = body["runId"]

    for run_id in crash_runs:
        run = appliance.finished_run(run_id, timeout=180)
        assert run["status"] == "failed", run
        assert "worker crashed 5 times" in run["steps"][0]["error"], run
    assert appliance.finished_run(bystander, timeout=60)["status"] == "completed"
    # Many crashes later, both workers are back and the appliance never stopped (wait_for checks it).
    for name in ("worker-1", "worker-2"):
        appliance.wait_for(f"supervisord to run {name}", lambda name=name: appliance.program_pid(name))
    assert appliance.supervisor().getProcessInfo("worker-1")["statename"] == "RUNNING"
    assert "could not be started" not in appliance.log_path.read_text()
    verified = engine_verify(appliance)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert appliance.stop() == 0, appliance.log_tail()


def watchdog_verdict(tmp_path: Path, event: str, payload: str) -> str | None:
    """Feeds one event to scripts/appliance/fatal-watchdog as supervisord would; returns the reason
    it left in RUN_DIR/fatal, or None. Its parent (which it signals to stop) is a throwaway shell."""
    header = f"ver:3.0 server:supervisor serial:1 pool:fatal-watchdog poolserial:1 eventname:{event} len:{len(payload)}"
    script = REPO / "scripts" / "appliance" / "fatal-watchdog"
    subprocess.run(["bash", "-c", f"{script}; true"], input=f"{header}\n{payload}", text=True, capture_output=True,
                   env={**os.environ, "RUN_DIR": str(tmp_path)}, timeout=10, check=False)
    marker = tmp_path / "fatal"
    return marker.read_text().strip() if marker.exists() else None


def test_a_worker_killed_by_a_step_is_no_reason_to_stop_but_invalid_settings_are(tmp_path: Path) -> None:
    killed = "processname:worker-1 groupname:worker-1 from_state:RUNNING expected:0 pid:4242"
    assert watchdog_verdict(tmp_path, "PROCESS_STATE_EXITED", killed) is None
    invalid = "processname:worker-2 groupname:worker-2 from_state:RUNNING expected:1 pid:4243"
    assert watchdog_verdict(tmp_path, "PROCESS_STATE_EXITED", invalid) == "worker-2 could not be started (invalid settings)"


def test_supervisord_never_gives_up_on_a_worker_and_knows_its_cannot_start_status() -> None:
    sections = configparser.RawConfigParser()
    sections.read(REPO / "supervisord.conf")
    for name in ("program:worker-1", "program:worker-2"):
        assert sections.get(name, "startsecs") == "0", name  # every spawn is a start: never BACKOFF/FATAL
        assert sections.get(name, "exitcodes") == "2", name  # worker/__main__.py: invalid settings
        assert sections.get(name, "autorestart") == "true", name
