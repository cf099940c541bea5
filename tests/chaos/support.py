"""What the chaos tests share: reading a run's events, waiting for workers and events with deadlines,
a supervisor that restarts crashed workers (as supervisord does in the appliance), and the invariant
check every chaos test ends with."""
from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Self

import psycopg

from engine import store
from engine.model import ACTIVE_STEP_STATUSES, Event, Run, RunStatus, StepStatus, WorkerStatus
from engine.store.events import events_global_after
from engine.store.notifications import notifications_for_run
from engine.verify import verify_all
from tests.helpers import WorkerProcess, wait_for


def run_events(conn: psycopg.Connection, run_id: object, kind: str | None = None) -> list[Event]:
    events = store.events_after(conn, str(run_id), 0, limit=1_000_000)
    return [e for e in events if kind is None or e.type == kind]


def worker_events(conn: psycopg.Connection, kind: str) -> list[Event]:
    """Events of every run and of no run (worker_started, worker_lost, ...) of one kind."""
    return [e for e in events_global_after(conn, 0, limit=1_000_000) if e.type == kind]


def wait_event(conn: psycopg.Connection, run_id: object, kind: str, timeout: float = 30.0,
               where: Callable[[Event], bool] = lambda _event: True) -> Event:
    """The first event of `kind` in the run that satisfies `where`, waiting for it to be written."""
    def found() -> Event | None:
        return next((e for e in run_events(conn, run_id, kind) if where(e)), None)
    return wait_for(found, timeout, f"a {kind} event in run {run_id}")


def run_status(conn: psycopg.Connection, run_id: object) -> RunStatus:
    return store.run_get(conn, str(run_id)).status


def wait_terminal(conn: psycopg.Connection, run_ids: Iterable[object], timeout: float) -> dict[str, RunStatus]:
    """Wait until every run is terminal; returns status by run id."""
    ids = {str(r) for r in run_ids}
    wait_for(lambda: not ids & set(store.run_ids(conn, status=RunStatus.RUNNING)), timeout,
             f"{len(ids)} run(s) to finish", interval=0.1)
    return {r: run_status(conn, r) for r in ids}


def wait_registered(conn: psycopg.Connection, *procs: WorkerProcess, timeout: float = 30.0) -> None:
    """Wait until each process has registered its current incarnation (and so holds its liveness lock)."""
    def registered() -> bool:
        rows = {w.name: w for w in store.workers_list(conn, include_gone=True)}
        return all(p.name in rows and rows[p.name].pid == p.pid and rows[p.name].status == WorkerStatus.RUNNING
                   for p in procs)
    wait_for(registered, timeout, f"workers {[p.name for p in procs]} to register")


def by_name(procs: Iterable[WorkerProcess], name: str | None) -> WorkerProcess:
    found = next((p for p in procs if p.name == name), None)
    assert found is not None, f"{name} is none of {[p.name for p in procs]}"
    return found


def victim_and_survivor(pair: list[WorkerProcess], started: Event) -> tuple[WorkerProcess, WorkerProcess]:
    """Of two workers, the one that wrote `started` (the one to kill) and the other."""
    victim = by_name(pair, started.worker)
    return victim, next(p for p in pair if p is not victim)


def kill_and_time(proc: WorkerProcess) -> float:
    """SIGKILL the worker; returns the wall-clock time of the kill (the database shares this clock)."""
    proc.signal(signal.SIGKILL)
    killed_at = time.time()
    proc.wait_exit(10)
    return killed_at


def seconds_since(wall_time: float, event: Event) -> float:
    return event.ts.timestamp() - wall_time


class BackgroundLoop:
    """A daemon thread running `_loop` for the duration of a `with` block; `_stop` ends it."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        raise NotImplementedError


class Supervisor(BackgroundLoop):
    """Restarts any worker process that exited, like supervisord's autorestart; counts restarts.
    Use as a context manager so it stops before the fixtures stop the workers."""

    def __init__(self, procs: list[WorkerProcess], check_seconds: float = 0.05) -> None:
        super().__init__("supervisor")
        self.procs = procs
        self.check_seconds = check_seconds
        self.restarts: Counter[str] = Counter()
        self.lock = threading.Lock()  # a chaos thread must not signal a process being replaced

    def _loop(self) -> None:
        while not self._stop.wait(self.check_seconds):
            with self.lock:
                for proc in self.procs:
                    if not proc.alive():
                        proc.log.close()
                        proc.start()
                        self.restarts[proc.name] += 1


def assert_invariants(conn: psycopg.Connection, run_ids: Iterable[object]) -> None:
    """What every chaos test ends with: each run terminal, no step left running, at most one
    recorded success per step, a notification for each succeeded `notify` step (the table's key makes
two impossible; a lost one would show here), and the
    invariant checker content with every run in the database."""
    for run_id in run_ids:
        run = store.run_get(conn, str(run_id))
        assert run.terminal, f"run {run_id} is still {run.status}"
        running = [s.name for s in run.steps if s.status in ACTIVE_STEP_STATUSES]
        assert not running or run.status == RunStatus.CANCELLED, f"run {run_id} left steps unfinished: {running}"
        successes = Counter(e.step_id for e in run_events(conn, run_id, "step_succeeded"))
        doubled = {step: n for step, n in successes.items() if n > 1}
        assert not doubled, f"run {run_id}: steps with more than one recorded success: {doubled}"
        _assert_notified_once(conn, run)
    assert verify_all(conn) == {}


def _assert_notified_once(conn: psycopg.Connection, run: Run) -> None:
    sent = Counter(n["idempotency_key"] for n in notifications_for_run(conn, run.id))
    for step in run.steps:
        if step.tool == "notify" and step.status == StepStatus.SUCCEEDED:
            key = f"{run.id}:{step.name}"
            assert sent[key] == 1, f"notify step {step.name} sent {sent[key]} notification(s)"
