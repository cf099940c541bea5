"""Processes under benchmark: our workers and web app (started exactly as shipped, with the
environment's defaults), the peers' workers, and what /proc says about them (peak RSS, CPU time).
"""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from bench.figures import Unavailable
from engine.pgcluster import free_port

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = Path(tempfile.gettempdir()) / "dae-bench-logs"


class Process:
    """A subprocess whose output goes to a log file under /tmp/dae-bench-logs."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(list(argv), cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group (gunicorn's children too), SIGKILL what is left after `timeout`."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()

    def output_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_worker(database_url: str, name: str, env: dict[str, str] | None = None) -> Process:
    """`python -m worker` as supervisord starts it: name only, every setting at its default."""
    return Process(name, [sys.executable, "-m", "worker", "--name", name],
                   {"DATABASE_URL": database_url, **(env or {})})


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_workers_registered(database_url: str, names: list[str], processes: list[Process],
                            timeout: float = 30.0) -> None:
    def registered() -> bool:
        for proc in processes:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.output_tail()}")
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(DISTINCT name) FROM workers WHERE status = 'running' AND name = ANY(%s)",
                               (names,)).fetchone()
        return row[0] == len(names)
    wait_for(registered, timeout, f"workers {names} to register", interval=0.1)


class WebApp:
    """`python -m app` on a free port; `Unavailable` when it is not there or does not come up."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        if not (ROOT / "app" / "__main__.py").exists():
            raise Unavailable("the web app is not in this checkout (no app/__main__.py)")
        self.port = free_port()
        self.process = Process("web", [sys.executable, "-m", "app"],
                               {"DATABASE_URL": database_url, "PORT": str(self.port), **(env or {})})
        try:
            wait_for(self._healthy, timeout, "GET /healthz", interval=0.1)
        except (TimeoutError, Unavailable) as exc:
            tail = self.process.output_tail()
            self.process.stop()
            raise Unavailable(f"`python -m app` did not become healthy ({exc}): {tail[-600:]}") from None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if not self.process.alive():
            raise Unavailable(f"`python -m app` exited with {self.process.proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def stop(self) -> None:
        self.process.stop()


# -- /proc ----------------------------------------------------------------------------------------

def peak_rss_mb(pid: int) -> float | None:
    """The high-water mark of the resident set (VmHWM) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def process_tree(root_pid: int) -> list[int]:
    """`root_pid` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by these processes and all their threads (nanosecond resolution from
    each thread's schedstat; a process's own schedstat counts its main thread only)."""
    total = 0.0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
            except (OSError, IndexError, ValueError):
                continue
    return total
