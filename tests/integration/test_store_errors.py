"""The store's error seam against a real Postgres: an unreachable server, a terminated session and
a real deadlock become the engine's exceptions; other errors pass through; the recorder retries a
deadlock a bounded number of times."""
from __future__ import annotations

import threading

import psycopg
import pytest

from engine import store
from engine.errors import EngineError, RetryableConflict, StoreUnavailable
from engine.store import driver_errors
from engine.store.steps import StepResult
from worker import worker as worker_module
from worker.worker import Worker


def test_an_unreachable_server_is_store_unavailable():
    with pytest.raises(StoreUnavailable, match="the database is unavailable"):
        store.connect("postgresql://postgres@127.0.0.1:1/none")


def test_a_terminated_session_is_store_unavailable(conn, db_url):
    with store.connect(db_url) as victim:
        pid = victim.info.backend_pid
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable):
            store.step_seconds_until_ready(victim)


def test_a_real_deadlock_is_a_retryable_conflict_and_other_errors_pass_through(db_url):
    outcomes: list[BaseException | None] = []
    both_locked = threading.Barrier(2)

    def take(first: int, second: int) -> None:
        with store.connect(db_url) as c:
            try:
                with driver_errors(), c.transaction():
                    c.execute("SELECT pg_advisory_xact_lock(%s)", (first,))
                    both_locked.wait(10)
                    c.execute("SELECT pg_advisory_xact_lock(%s)", (second,))
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - recorded for the assertions
                outcomes.append(exc)

    threads = [threading.Thread(target=take, args=(1, 2)), threading.Thread(target=take, args=(2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "RetryableConflict"]
    conflict = next(o for o in outcomes if o is not None)
    assert "deadlock" in str(conflict) and isinstance(conflict.__cause__, psycopg.Error)

    with store.connect(db_url) as c, pytest.raises(psycopg.Error) as bug, driver_errors():
        c.execute("SELECT 1 / 0")  # a bug stays loud: not dressed up as an outage or a conflict
    assert bug.value.sqlstate == "22012" and not isinstance(bug.value, EngineError)


def test_the_recorder_retries_a_conflict_a_bounded_number_of_times(settings, monkeypatch, caplog):
    calls: list[int] = []

    def always_deadlocked(*args: object) -> None:
        calls.append(1)
        raise RetryableConflict("deadlock detected (40P01)")

    monkeypatch.setattr(worker_module, "RECORD_RETRY_BASE_SECONDS", 0.001)
    monkeypatch.setattr(worker_module.store, "step_record_and_claim", always_deadlocked)
    worker = Worker(settings, "conflicted", concurrency=1)
    try:
        result = StepResult(1, 1, ok=True, output_json="{}")
        summary, claimed = worker._record_with_retries([result], 0)
    finally:
        worker.recorder.close()
    assert len(calls) == worker_module.RECORD_RETRIES + 1
    assert summary.discarded == 0 and claimed == []
    assert "leaving them to lease expiry" in caplog.text
