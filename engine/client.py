"""The client over Postgres: submit, read, wait for and steer runs without the web app.

`durable_agent.Client` is this class, and `python -m engine` (the CLI) is built on it, so a script
and the command line do exactly the same thing. Waiting is event-driven: `wait()` and `watch()`
LISTEN on the events channel and re-read the run when a NOTIFY arrives; because a notification can
be lost (a reconnect, a full queue), they also re-read after at most `POLL_SECONDS` without one.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID

import psycopg

from engine import store
from engine.config import Settings
from engine.eventorder import RunFollower
from engine.model import Event, Run, SignalOutcome
from engine.rerun import rerun_run
from engine.store.notify import wait_for_notify
from engine.store.tools import tools_known, tools_live
from engine.submit import submit_run
from engine.tools.registry import BUILTIN_TOOL_NAMES

POLL_SECONDS = 1.0  # longest a wait goes without re-reading the run when no NOTIFY arrives


class HasSpec(Protocol):
    def spec(self) -> dict[str, Any]: ...


class Client:
    """A connection to the engine's database.

    `Client(database_url)` (default: `$DATABASE_URL`); other settings — run size limits, retry
    defaults — come from the environment as for every process. One connection is opened lazily
    and shared by the calls (guarded by a lock); `wait()` and `watch()` each open their own, so one
    thread can wait while another submits. Use it as a context manager or call `close()`.
    """

    def __init__(self, database_url: str | None = None, settings: Settings | None = None, actor: str = "client") -> None:
        overrides = {"database_url": database_url} if database_url else {}
        self.settings = settings or Settings.from_env(**overrides)
        self.actor = actor  # the `worker` field of the cancel and redrive events it writes
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()

    # -- connection ------------------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection:
        """The shared autocommit connection (opened on first use, reopened after it broke)."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = store.connect(self.settings.database_url, application_name="durable-agent-client")
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------------------

    def submit(self, workflow_or_spec: HasSpec | dict[str, Any], idempotency_key: str | None = None) -> str:
        """Submit a `Workflow` or a run spec (the JSON of `POST /api/runs`); returns the run id.

        Validated exactly as the API validates (same messages): an unknown tool, a cycle or a
        duplicate name raises `InvalidRun` and nothing is stored. With an idempotency key, a second
        submission of the same run returns the first run's id; the same key with a different run
        raises `Conflict`.
        """
        return self.submit_created(workflow_or_spec, idempotency_key)[0]

    def submit_created(self, workflow_or_spec: HasSpec | dict[str, Any],
                       idempotency_key: str | None = None) -> tuple[str, bool]:
        """As `submit`, and whether a new run was created (False: the idempotency key's run)."""
        body = workflow_or_spec.spec() if hasattr(workflow_or_spec, "spec") else dict(workflow_or_spec)
        if idempotency_key is not None:
            body = {**body, "idempotencyKey": idempotency_key}
        with self._lock:
            run_id, created = submit_run(self.conn, body, self.settings)
        return str(run_id), created

    def tools(self, live: bool = False) -> list[str]:
        """The tool names submission accepts: the built-ins and every tool a worker has offered.
        With `live`, only those some live worker offers right now."""
        with self._lock:
            if live:
                return sorted(tools_live(self.conn))
            return sorted(BUILTIN_TOOL_NAMES | set(tools_known(self.conn)))

    def wait_for_tools(self, names: list[str], timeout: float | None = None) -> list[str]:
        """Block until live workers offer every tool in `names` (a worker just started registers
        its tools within moments); returns the live tools. `TimeoutError` names the missing ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._listening() as listener:
            while True:
                live = tools_live(listener)
                missing = sorted(set(names) - live)
                if not missing:
                    return sorted(live)
                remaining = POLL_SECONDS if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no live worker offers {', '.join(missing)} after {timeout:g}s")
                wait_for_notify(listener, min(POLL_SECONDS, remaining))  # worker_started is announced

    def get(self, run_id: UUID | str) -> Run:
        """The run and its steps (`engine.model.Run`); `NotFound` for an unknown id."""
        with self._lock:
            return store.run_get(self.conn, run_id)

    def events(self, run_id: UUID | str, after: int | None = None) -> list[Event]:
        """The run's audit events with id > `after`, in order (every one, paged internally)."""
        with self._lock:
            store.run_get(self.conn, run_id)  # NotFound instead of an empty list
            found: list[Event] = []
            while page := store.events_after(self.conn, run_id, found[-1].id if found else after or 0, limit=1000):
                found.extend(page)
            return found

    def wait(self, run_id: UUID | str, timeout: float | None = None) -> Run:
        """Block until the run is completed, failed or cancelled, and return it (as `get`). Raises
        `TimeoutError` after `timeout` seconds (None waits for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._listening() as listener:
            while True:
                run = store.run_get(listener, run_id)
                if run.status.terminal:
                    return run
                remaining = POLL_SECONDS if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"run {run_id} is still {run.status} after {timeout:g}s")
                wait_for_notify(listener, min(POLL_SECONDS, remaining))

    def watch(self, run_id: UUID | str, after: int = 0) -> Iterator[Event]:
        """Yield the run's events as they are written (history after `after` first); the iterator
        ends after the last event of a terminal run. Events are never repeated or skipped, even
        when audit ids commit out of order (`engine.eventorder.RunFollower`)."""
        with self._listening() as listener:
            run_id = str(store.run_get(listener, run_id).id)
            follower = RunFollower(run_id, after=after)
            yield from follower.start(listener)
            while True:
                if store.run_get(listener, run_id).status.terminal:
                    # Every row of a terminal run is committed: the rest, without waiting on gaps.
                    yield from follower.finish(listener)
                    return
                wait_for_notify(listener, POLL_SECONDS)
                yield from follower.poll(listener)

    def cancel(self, run_id: UUID | str) -> int:
        """Cancel a running run; returns how many unfinished steps were cancelled. `Conflict` if it
        already finished."""
        with self._lock:
            return store.run_cancel(self.conn, run_id, by=self.actor)

    def redrive(self, step_id: int) -> str:
        """Give a dead-lettered step `maxAttempts` more attempts (re-opening its run); returns the run id."""
        with self._lock:
            return str(store.step_redrive(self.conn, step_id, by=self.actor))

    def signal(self, run_id: UUID | str, step_name: str, payload: dict[str, Any],
               sender: str | None = None) -> SignalOutcome:
        """Resolve the waiting step `step_name` (a `wait.<label>` step) with `payload` as its output.
        `Conflict` when it is not waiting (already resolved, timed out, or the run ended)."""
        with self._lock:
            return store.step_signal(self.conn, run_id, step_name, payload, sender=sender or self.actor,
                                     max_payload_bytes=self.settings.max_input_bytes)

    def rerun(self, run_id: UUID | str, from_step: str, input_override: dict[str, Any] | None = None) -> str:
        """A new run that reuses the outputs of every step not downstream of `from_step` and runs
        `from_step` (with `input_override` merged into its input) and what follows afresh; returns
        its id. `Conflict` while the source run is still running."""
        with self._lock:
            return str(rerun_run(self.conn, run_id, from_step, input_override, self.settings, client=self.actor))

    def _listening(self) -> psycopg.Connection:
        conn = store.connect(self.settings.database_url, application_name="durable-agent-client-listen")
        store.listen(conn, store.EVENTS_CHANNEL)
        return conn

