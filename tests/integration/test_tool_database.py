"""A tool's database connection (issue 17, point 1): a lost session is retried on a fresh
connection, the tool's own errors are not, and a database that stays away makes the worker release
the step without using its attempt."""
from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from engine import store
from engine.errors import StoreUnavailable
from engine.store.notifications import notification_record, notifications_for_run
from engine.submit import submit_run
from engine.verify import verify_run
from tests.chaos.support import run_events
from tests.helpers import make_run, step, wait_for
from worker.tool_database import ToolDatabase
from worker.worker import Worker

NEVER = threading.Event()


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def test_a_session_ended_under_the_tool_is_retried_on_a_fresh_connection(conn, db_url):
    tools = ToolDatabase(db_url, "test:tools", threading.Event())
    try:
        first = tools.call(backend_pid, NEVER)
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))  # as a restart does to every session
        wait_for(lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone(),
                 10, "the session to end")
        second = tools.call(backend_pid, NEVER)
        assert second != first
    finally:
        tools.close()


def test_an_error_after_which_the_session_lives_is_the_tools_own(db_url):
    tools = ToolDatabase(db_url, "test:tools", threading.Event())
    try:
        def slow(c: psycopg.Connection) -> object:
            c.execute("SET statement_timeout = 10")
            try:
                return c.execute("SELECT pg_sleep(1)").fetchone()
            finally:
                c.execute("RESET statement_timeout")
        with pytest.raises(psycopg.errors.QueryCanceled):  # an OperationalError, but no outage
            tools.call(slow, NEVER)
        assert tools.call(lambda c: c.execute("SELECT 1 AS one").fetchone()["one"], NEVER) == 1
    finally:
        tools.close()


def test_an_unreachable_database_raises_store_unavailable_after_the_retry_window(pg):
    unreachable = pg.url("postgres").replace(f":{pg.port}/", ":1/")
    tools = ToolDatabase(unreachable, "test:tools", threading.Event(), retry_seconds=0.3)
    with pytest.raises(StoreUnavailable, match="database unavailable for 0.3s"):
        tools.call(backend_pid, NEVER)


def test_a_retry_that_finds_its_own_attempts_notification_says_it_sent_it(conn, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.tell", tool="notify")), settings)
    key = f"{run_id}:tool_call.tell"
    assert notification_record(conn, key, run_id, "hello", 1) is True
    assert notification_record(conn, key, run_id, "hello", 1) is True, "the reply of the first was lost"
    assert notification_record(conn, key, run_id, "hello", 2) is False, "a later attempt finds it sent"
    assert len(notifications_for_run(conn, run_id)) == 1


def test_a_step_whose_tool_finds_the_database_gone_is_released_without_using_its_attempt(conn, settings, db_url, pg,
                                                                                           caplog):
    caplog.set_level(logging.INFO, logger="worker")
    run_id, _ = submit_run(conn, make_run(step("tool_call.tell", tool="notify", max_attempts=1)), settings)
    worker = Worker(settings, "tools-down", concurrency=1)
    worker.liveness.get()
    unreachable = db_url.replace(f":{pg.port}/", ":1/")
    worker.side_effects = ToolDatabase(unreachable, "tools-down:tools", worker.shutdown, retry_seconds=0.2)
    try:
        assert worker.run_once() == 1
        slot = threading.Thread(target=lambda: worker._execute(worker.tasks.get()), daemon=True)
        slot.start()  # the notify fails, then the release waits for the database to be back
        wait_for(lambda: "releasing it without using the attempt" in caplog.text, 10, "the tool to give up")
        assert store.run_get(conn, run_id).steps[0].status == "running", "kept (and leased) while away"
        worker.side_effects.conn.database_url = db_url  # the database is back
        slot.join(10)
        assert not slot.is_alive() and not worker.table.flights
        released = run_events(conn, run_id, "step_reclaimed")
        assert [(e.detail["reason"], e.detail["countsAsAttempt"]) for e in released] == [
            ("database unavailable to the tool", False)]

        assert worker.run_once() == 1  # attempt 2, within the budget the release gave back
        worker._execute(worker.tasks.get())  # the slot records its own result (same-slot hand-off)
        run = store.run_get(conn, run_id)
        assert run.status == "completed" and run.steps[0].attempt == 2
        assert [n["attempt"] for n in notifications_for_run(conn, run_id)] == [2]
    finally:
        worker.shutdown.set()
        for connection in (worker.claimer, worker.recorder, worker.reaper.conn, worker.side_effects.conn,
                           worker.liveness):
            connection.close()
    assert verify_run(conn, str(run_id)) == []
