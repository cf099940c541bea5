"""Boots the appliance on this host exactly as a user does (scripts/run, which executes the
container's entrypoint) and checks what it promises: health, two workers, runs that complete, a
killed worker that supervisord brings back while its run still completes, data kept across a
reboot, a clean stop on SIGTERM, a non-zero exit when a vital program cannot start. It prints the
appliance's memory, idle and under load.

Each boot gets a temporary DATA_DIR under /tmp (as root, the entrypoint hands it to the `postgres`
user, who must be able to reach it) and free ports. The test finds the appliance's processes as
the session it starts scripts/run in and their descendants, and remembers every one it saw.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_SCRIPT = REPO / "scripts" / "run"
BOOT_SECONDS = 120  # a first boot creates the cluster and may check the virtualenv
STOP_SECONDS = 40  # supervisord's stop sequence is at most 28 s (supervisord.conf)
T = TypeVar("T")


def missing_prerequisites() -> list[str]:
    """What scripts/run would have to install with apt-get: a test does not do that."""
    missing = []
    pg_bin = os.environ.get("PG_BIN")
    if not (Path(pg_bin, "postgres").exists() if pg_bin else list(Path("/usr/lib/postgresql").glob("*/bin/postgres"))):
        missing.append("a PostgreSQL server (postgresql-15)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        missing.append("setpriv (util-linux)")
    return missing


pytestmark = pytest.mark.skipif(
    bool(missing_prerequisites()), reason=f"the appliance needs {', '.join(missing_prerequisites())}"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, condition: Callable[[], T | None], timeout: float, on_timeout: Callable[[], str]) -> T:
    """Polls `condition` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f}s waiting for {what}\n{on_timeout()}")
        time.sleep(0.2)


class Appliance:
    """One boot of scripts/run in its own session, with a log file and the means to inspect it."""

    def __init__(self, data_dir: Path, log_path: Path, **environment: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        self.environment = {
            **os.environ,
            "PORT": str(self.port),
            "PGPORT": str(free_port()),
            "DATA_DIR": str(data_dir),
            **environment,
        }
        # Append mode: supervisord reopens our stdout and appends to it too.
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(RUN_SCRIPT)],
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.seen: set[Process] = set()
        self.processes()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "--- appliance log (last lines) ---\n" + "\n".join(text[-lines:])

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the appliance exited with {self.process.returncode}\n{self.log_tail()}")

    def wait_for(self, what: str, condition: Callable[[], T | None], timeout: float = 60) -> T:
        def checked() -> T | None:
            self.assert_running()
            return condition()

        return wait_for(what, checked, timeout, self.log_tail)

    # --- HTTP ---
    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            return status, json.loads(payload or b"null")
        except ValueError:
            return status, payload.decode(errors="replace")

    def is_healthy(self) -> bool:
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def workers(self) -> dict[str, dict[str, Any]]:
        status, workers = self.request("GET", "/api/workers")
        assert status == 200, workers
        return {worker["name"]: worker for worker in workers}

    def submit(self, steps: list[dict[str, Any]], goal: str = "appliance test") -> str:
        status, body = self.request("POST", "/api/runs", {"goal": goal, "steps": steps})
        assert status == 201, body
        return str(body["runId"])

    def run(self, run_id: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/runs/{run_id}")
        assert status == 200, body
        return body

    def finished_run(self, run_id: str, timeout: float = 90) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] != "running" else None

        return self.wait_for(f"run {run_id} to finish", finished, timeout)

    # --- supervisord, over the same socket as the Kill button ---
    def supervisor(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.data_dir}/run/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def program_pid(self, name: str) -> int | None:
        info = self.supervisor().getProcessInfo(name)
        return info["pid"] if info["statename"] == "RUNNING" else None

    # --- processes ---
    def processes(self) -> set[Process]:
        """Every live process of the appliance: its session, and the children of those that left
        it (Postgres's backends may call setsid)."""
        table = process_table()
        members = {pid for pid, (ppid, session, _) in table.items() if session == self.process.pid}
        while True:
            children = {pid for pid, (ppid, _, _) in table.items() if ppid in members} - members
            if not children:
                break
            members |= children
        found = {Process(pid, table[pid][2]) for pid in members}
        self.seen |= found
        return found

    def survivors(self) -> set[Process]:
        """Processes this appliance ever had that still run (pid and start time both match)."""
        table = process_table()
        candidates = self.seen | self.processes()
        return {process for process in candidates if table.get(process.pid, (0, 0, -1))[2] == process.start_time}

    def memory_mb(self) -> tuple[int, float, float]:
        """(process count, summed RSS, summed PSS) of the appliance; PSS splits shared pages."""
        pids = {process.pid for process in self.processes()}
        rss_kb = pss_kb = 0
        for pid in pids:
            try:
                rss_kb += proc_field_kb(f"/proc/{pid}/status", "VmRSS:")
                pss_kb += proc_field_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
            except OSError:
                continue
        return len(pids), rss_kb / 1024, pss_kb / 1024

    def stop(self) -> int:
        """SIGTERM to the top process, as `docker stop` or Ctrl-C would; returns its exit status."""
        self.processes()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the appliance did not stop within {STOP_SECONDS}s of SIGTERM\n{self.log_tail()}")
        self.wait_until_all_gone()
        return status

    def wait_until_all_gone(self) -> None:
        wait_for("the appliance's processes to exit", lambda: not self.survivors(), 10, self.describe_survivors)

    def describe_survivors(self) -> str:
        return "left behind: " + ", ".join(f"{process.pid} {command_line(process.pid)}" for process in self.survivors())

    def kill_everything(self) -> None:
        """Teardown after a failure: nothing may outlive the test."""
        for process in self.survivors():
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)


class Process(NamedTuple):
    pid: int
    start_time: int  # in clock ticks since boot: tells a pid apart from a later reuse


def process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, session id, start time) of every process that is not a zombie."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[3]), int(fields[19]))
    return table


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return "?"


def proc_field_kb(path: str, field: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def fetch_step(name: str, seconds: float) -> dict[str, Any]:
    return {"name": f"tool_call.{name}", "input": {"tool": "fetch_data", "sleepSeconds": seconds}}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp_path: as root, Postgres runs as `postgres`, who must reach it.
    path = Path(tempfile.mkdtemp(prefix="appliance-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def boot(data_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Appliance]]:
    appliances: list[Appliance] = []

    def start(**environment: str) -> Appliance:
        appliance = Appliance(data_dir, tmp_path / f"boot-{len(appliances) + 1}.log", **environment)
        appliances.append(appliance)
        return appliance

    yield start
    for appliance in appliances:
        if appliance.process.poll() is None or appliance.survivors():
            appliance.kill_everything()


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[appliance] {line}", flush=True)


@pytest.mark.timeout(600)
def test_appliance_boots_survives_a_killed_worker_stops_cleanly_and_keeps_its_data(
    boot: Callable[..., Appliance], capsys: pytest.CaptureFixture[str]
) -> None:
    appliance = boot()
    appliance.wait_for("GET /healthz to answer 200", appliance.is_healthy, BOOT_SECONDS)
    appliance.wait_for("worker-1 and worker-2 to be listed", lambda: {"worker-1", "worker-2"} <= set(appliance.workers()))
    count, rss, pss = appliance.memory_mb()
    report(capsys, f"memory idle: {count} processes, RSS {rss:.0f} MB, PSS {pss:.0f} MB")

    first_run = appliance.submit([fetch_step("fetch", 1)])
    assert appliance.finished_run(first_run)["status"] == "completed"

    # Kill worker-1 while it holds a step: supervisord restarts it, the step is retried. More
    # steps than one worker has slots, so that both get some.
    old_pid = appliance.wait_for("supervisord to count worker-1 as running", lambda: appliance.program_pid("worker-1"))
    assert old_pid == appliance.workers()["worker-1"]["pid"]
    killed_run = appliance.submit([fetch_step(f"slow_{i}", 3) for i in range(48)])
    appliance.wait_for("worker-1 to run a step", lambda: appliance.workers()["worker-1"]["running"])
    status, body = appliance.request("POST", "/api/workers/worker-1/kill")
    assert 200 <= status < 300, body
    new_pid = appliance.wait_for(
        "supervisord to bring worker-1 back", lambda: (pid := appliance.program_pid("worker-1")) != old_pid and pid
    )
    appliance.wait_for("worker-1 to register its new pid", lambda: appliance.workers()["worker-1"]["pid"] == new_pid)
    run = appliance.finished_run(killed_run)
    assert run["status"] == "completed", run
    assert max(step["attempt"] for step in run["steps"]) >= 2, "the killed worker's step was not retried"

    # Twenty runs at once, measured while they execute.
    load_runs = [appliance.submit([fetch_step("a", 2), fetch_step("b", 2)], goal=f"load {i}") for i in range(20)]
    peak = (0, 0.0, 0.0)

    def all_finished() -> bool:
        nonlocal peak
        peak = max(peak, appliance.memory_mb(), key=lambda sample: sample[1])
        return all(appliance.run(run_id)["status"] != "running" for run_id in load_runs)

    appliance.wait_for("the 20 runs to finish", all_finished, 120)
    assert {appliance.run(run_id)["status"] for run_id in load_runs} == {"completed"}
    report(capsys, f"memory with 20 runs executing (peak): {peak[0]} processes, RSS {peak[1]:.0f} MB, PSS {peak[2]:.0f} MB")

    assert appliance.stop() == 0, appliance.log_tail()

    # A second boot on the same DATA_DIR keeps the cluster and the runs.
    again = boot()
    again.wait_for("GET /healthz to answer 200 after a reboot", again.is_healthy, BOOT_SECONDS)
    assert again.run(first_run)["status"] == "completed"
    assert again.run(killed_run)["status"] == "completed"
    assert "first boot" not in again.log_path.read_text()
    assert again.stop() == 0, again.log_tail()


@pytest.mark.timeout(180)
def test_appliance_exits_non_zero_when_postgres_cannot_start(boot: Callable[..., Appliance]) -> None:
    appliance = boot(PG_SHARED_BUFFERS="not-a-size")
    try:
        status = appliance.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the appliance kept running with a Postgres that cannot start\n{appliance.log_tail()}")
    assert status == 1, appliance.log_tail()
    assert "postgres could not be started" in appliance.log_path.read_text(), appliance.log_tail()
    appliance.wait_until_all_gone()
