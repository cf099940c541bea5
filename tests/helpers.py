"""Test helpers: waiting for a condition with a deadline (never a bare sleep), worker processes,
and a factory for run bodies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from engine.pgcluster import PgCluster

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """The one test clock: a callable returning `now`, which the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(condition: Callable[[], T], timeout: float = 30.0, message: str = "condition",
             interval: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")
        time.sleep(interval)  # polling interval of a deadline-bounded wait, not a synchronisation
        last = condition()
    return last


FAST_ENV = {
    "LEASE_SECONDS": "3",
    "HEARTBEAT_SECONDS": "0.5",
    "RETRY_BASE_SECONDS": "0.05",
    "RETRY_MAX_SECONDS": "0.5",
    "REAPER_INTERVAL_SECONDS": "0.1",
    "POLL_SECONDS": "0.5",
    "SHUTDOWN_GRACE_SECONDS": "5",
    "RESTART_GRACE_SECONDS": "3",
    "LLM_OFFLINE_TOKENS_PER_SECOND": "400",  # the offline model streams, fast in tests
    "LOG_LEVEL": "INFO",
}


class WorkerProcess:
    """A real `python -m worker` subprocess."""

    def __init__(self, database_url: str, name: str, concurrency: int = 4, env: dict[str, str] | None = None,
                 log_dir: Path | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.cwd = cwd or ROOT  # the appliance's workers run in the app's directory: this checkout
        self.database_url = database_url
        self.concurrency = concurrency
        self.extra_env = env or {}
        self.log_path = (log_dir or Path("/tmp")) / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> WorkerProcess:
        env = {**os.environ, **FAST_ENV, **self.extra_env, "DATABASE_URL": self.database_url}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "worker", "--name", self.name,
                                      "--concurrency", str(self.concurrency)],
                                     cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(10)  # type: ignore[union-attr]

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            try:
                self.signal(signal.SIGCONT)
                self.signal(signal.SIGTERM)
                self.proc.wait(15)  # type: ignore[union-attr]
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.kill()
        self.log.close()


def step(name: str, depends_on: list[str] | None = None, **input_: Any) -> dict[str, Any]:
    """A step body: `step("tool_call.a", tool="fetch_data")`; extra keys go into `input`.
    Use `max_attempts=`/`timeout=`/`backoff=`/`limit_key=` for the step's own fields."""
    body: dict[str, Any] = {"name": name}
    if "max_attempts" in input_:
        body["maxAttempts"] = input_.pop("max_attempts")
    if "timeout" in input_:
        body["timeoutSeconds"] = input_.pop("timeout")
    if "backoff" in input_:
        body["backoff"] = input_.pop("backoff")
    if "limit_key" in input_:
        body["limitKey"] = input_.pop("limit_key")
    body["input"] = input_
    if depends_on:
        body["dependsOn"] = depends_on
    return body


def make_run(*steps: dict[str, Any], goal: str = "test run", key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"goal": goal, "steps": list(steps)}
    if key:
        body["idempotencyKey"] = key
    return body


def chain(length: int, **input_: Any) -> dict[str, Any]:
    steps = [step(f"tool_call.s{i}", [f"tool_call.s{i - 1}"] if i else None, tool="fetch_data", **input_)
             for i in range(length)]
    return make_run(*steps, goal=f"chain of {length}")


TEMPLATE_DB = "dae_template"  # created and migrated once per session by the root conftest's `pg` fixture


def create_database(cluster: PgCluster, prefix: str) -> str:
    """A fresh database cloned from the migrated template."""
    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return name


def drop_database(cluster: PgCluster, name: str) -> None:
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg.OperationalError:
        pass  # the cluster may be down after a chaos test; it is thrown away anyway
