"""The appliance as a hostile visitor sees it (issue 13): while one client floods it — crash steps
that kill workers a moment after they start, 150 WebSockets, slowloris connections, long sleeps —
another visitor's run completes, /healthz answers within a second, and the appliance never stops.

Boots scripts/run like test_appliance_boot.py (whose harness this reuses). Visitors are told apart
by their source address: the loopback answers any 127/8 address, and the attacker's connections
come from 127.0.0.2-7 while the bystander speaks from 127.0.0.1.
"""
from __future__ import annotations

import configparser
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.appliance.test_appliance_boot import (  # noqa: F401 - fixtures
    BOOT_SECONDS,
    REPO,
    Appliance,
    boot,
    data_dir,
)

BYSTANDER = "127.0.0.1"
SOCKETS_FROM = "127.0.0.2"
SLOW_FROM = "127.0.0.3"
SLEEPS_FROM = "127.0.0.4"
CRASHES_FROM = ("127.0.0.5", "127.0.0.6", "127.0.0.7")


def request(appliance: Appliance, method: str, path: str, body: Any = None, source: str = BYSTANDER,
            timeout: float = 10) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", appliance.port, timeout=timeout, source_address=(source, 0))
    try:
        data = None if body is None else json.dumps(body)
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        try:
            return response.status, json.loads(payload or b"null")
        except ValueError:
            return response.status, payload.decode(errors="replace")
    finally:
        connection.close()


def healthz_within_a_second(appliance: Appliance) -> bool:
    return request(appliance, "GET", "/healthz", timeout=1)[0] == 200


def engine_verify(appliance: Appliance) -> subprocess.CompletedProcess[str]:
    """`python -m engine verify` against the appliance's own database (over its unix socket)."""
    url = f"postgresql://app@/agent?host={appliance.data_dir}/run&port={appliance.environment['PGPORT']}"
    return subprocess.run([sys.executable, "-m", "engine", "verify"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url}, timeout=60, check=False)


def crash_step(name: str, attempts: int) -> dict[str, Any]:
    return {"name": f"tool_call.{name}", "input": {"tool": "fetch_data", "crash": True}, "maxAttempts": attempts}


@contextmanager
def sockets_flood(appliance: Appliance, count: int = 150) -> Iterator[list[websocket.WebSocket]]:
    """`count` page WebSockets from one address, held open; yields those that got a snapshot (the
    others were closed by the caps)."""
    opened: list[websocket.WebSocket] = []
    live = []
    for _ in range(count):
        try:
            raw = socket.create_connection(("127.0.0.1", appliance.port), timeout=5, source_address=(SOCKETS_FROM, 0))
            ws = websocket.create_connection(f"ws://127.0.0.1:{appliance.port}/ws/pages/dashboard", timeout=5,
                                             socket=raw)
            opened.append(ws)
            if ws.recv_frame().opcode == websocket.ABNF.OPCODE_TEXT:
                live.append(ws)
        except (OSError, websocket.WebSocketException):
            continue  # refused at the address's connection cap
    try:
        yield live
    finally:
        for ws in opened:
            ws.close()


@contextmanager
def slowloris(appliance: Appliance, count: int = 100) -> Iterator[None]:
    """`count` connections that send their headers a byte every 0.3 s, reconnecting when cut off."""
    stop = threading.Event()

    def one() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", appliance.port), timeout=5,
                                              source_address=(SLOW_FROM, 0)) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                    while not stop.wait(0.3):
                        sock.send(b"X")
            except OSError:
                stop.wait(0.3)  # cut off or refused: come back, as an attacker would

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


@pytest.mark.timeout(420)
def test_one_clients_flood_never_stops_the_appliance_nor_another_visitors_run(
    boot: Callable[..., Appliance],  # noqa: F811 - the fixture imported above
) -> None:
    appliance = boot()
    appliance.wait_for("GET /healthz to answer 200", appliance.is_healthy, BOOT_SECONDS)
    appliance.wait_for("both workers to be listed", lambda: {"worker-1", "worker-2"} <= set(appliance.workers()))

    # The probe: 50 crash steps in one run are refused outright.
    status, body = request(appliance, "POST", "/api/runs", {"goal": "crash 50", "steps": [
        crash_step(f"c{i}", 1) for i in range(50)]}, source=CRASHES_FROM[0])
    assert status == 400 and "crash" in body["error"], body

    status, body = request(appliance, "POST", "/api/runs", {"goal": "long sleeps", "steps": [
        {"name": f"tool_call.nap{i}", "input": {"tool": "sleep", "seconds": 3600}} for i in range(40)]},
        source=SLEEPS_FROM)
    assert status == 201, body
    sleeps = body["runId"]

    with sockets_flood(appliance) as held, slowloris(appliance):
        assert 0 < len(held) <= 8  # MAX_SOCKETS_PER_CLIENT: the rest were closed with 1013
        # Within the per-run bound, crash steps still kill workers again and again, each time a
        # moment after the worker (re)started. Three attackers fill their active-run caps with them.
        crash_runs = []
        for source in CRASHES_FROM:
            for i in range(20):
                status, body = request(appliance, "POST", "/api/runs", {"goal": f"crash {i}", "steps": [
                    crash_step("boom", 5)]}, source=source)
                assert status == 201, body
                crash_runs.append(body["runId"])
        assert healthz_within_a_second(appliance)
        status, body = request(appliance, "POST", "/api/runs", {"goal": "bystander", "steps": [
            {"name": "tool_call.a", "input": {"tool": "fetch_data"}},
            {"name": "tool_call.b", "input": {"tool": "transform"}, "dependsOn": ["tool_call.a"]},
            {"name": "llm_call.c", "input": {"prompt": "sum up"}, "dependsOn": ["tool_call.b"]}]})
        assert status == 201, body
        bystander = body["runId"]

        def bystander_done() -> str | None:
            assert healthz_within_a_second(appliance)
            run = request(appliance, "GET", f"/api/runs/{bystander}")[1]
            return run["status"] if run["status"] != "running" else None

        assert appliance.wait_for("the bystander's run to finish", bystander_done, 120) == "completed"
        assert request(appliance, "GET", "/")[0] == 200

    for run_id in crash_runs:
        run = appliance.finished_run(run_id, timeout=180)
        assert run["status"] == "failed", run
        assert "worker crashed 5 times" in run["steps"][0]["error"], run
    naps = request(appliance, "GET", f"/api/runs/{sleeps}")[1]["steps"]
    assert sum(step["status"] == "running" for step in naps) <= 8 * 2  # MAX_RUNNING_STEPS_PER_CLIENT, 2 claimers
    assert request(appliance, "POST", f"/api/runs/{sleeps}/cancel", source=SLEEPS_FROM)[0] == 200
    # Many crashes later, both workers are back and the appliance never stopped (wait_for checks it).
    for name in ("worker-1", "worker-2"):
        appliance.wait_for(f"supervisord to run {name}", lambda name=name: appliance.program_pid(name))
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
    verdict = watchdog_verdict(tmp_path, "PROCESS_STATE_EXITED", invalid)
    assert verdict == "worker-2 could not be started (invalid settings or tool modules)"


def test_supervisord_never_gives_up_on_a_worker_and_knows_its_cannot_start_status() -> None:
    sections = configparser.RawConfigParser()
    sections.read(REPO / "supervisord.conf")
    for name in ("program:worker-1", "program:worker-2"):
        assert sections.get(name, "startsecs") == "0", name  # every spawn is a start: never BACKOFF/FATAL
        assert sections.get(name, "exitcodes") == "2", name  # worker/__main__.py: invalid settings or tool modules
        assert sections.get(name, "autorestart") == "true", name
