"""The web process's event listener against a real Postgres: transactions that commit out of id
order, rolled-back ids, per-run subscriptions and slow subscribers."""
from __future__ import annotations

import psycopg
import pytest

from app.broadcast import Broadcaster, Subscription
from engine.model import Event
from engine.store import connect
from engine.store.chaos import worker_kill_record
from engine.submit import submit_run
from tests.helpers import FakeClock, make_run, step, wait_for


class Abort(Exception):
    pass


@pytest.fixture
def listener(db_url: str):
    with connect(db_url) as conn:
        yield conn


def audit_row(conn: psycopg.Connection, name: str) -> int:
    """One audit row (a kill request is the simplest), in the caller's transaction if one is open."""
    return worker_kill_record(conn, name, 1, "test")


def test_a_row_that_commits_late_is_delivered_in_id_order(db_url, conn, listener):
    broadcaster = Broadcaster(db_url, gap_seconds=60, background=False)
    broadcaster.begin(listener)
    sub = broadcaster.subscribe()
    with connect(db_url) as slow:
        with slow.transaction():
            late = audit_row(slow, "late")     # holds an id, not committed yet
            early = audit_row(conn, "early")   # a higher id, committed first
            assert early > late
            broadcaster.run_once(listener)
            assert sub.get_batch(0.01) == []   # held behind the missing id
        broadcaster.run_once(listener)
    assert [e.id for e in sub.get_batch(0.01)] == [late, early]


def test_a_rolled_back_id_is_skipped_after_the_gap_time(db_url, conn, listener):
    clock = FakeClock()
    broadcaster = Broadcaster(db_url, gap_seconds=2, clock=clock, background=False)
    broadcaster.begin(listener)
    sub = broadcaster.subscribe()
    with connect(db_url) as doomed, pytest.raises(Abort), doomed.transaction():
        audit_row(doomed, "rolled-back")
        after = audit_row(conn, "after")
        raise Abort
    broadcaster.run_once(listener)
    assert sub.get_batch(0.01) == []
    clock.now += 2
    broadcaster.run_once(listener)
    assert [e.id for e in sub.get_batch(0.01)] == [after]


def test_a_subscription_gets_events_after_its_start_horizon_of_its_run_and_of_workers(db_url, conn, listener, settings):
    broadcaster = Broadcaster(db_url, background=False)
    broadcaster.begin(listener)
    before, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    broadcaster.run_once(listener)
    mine, _ = submit_run(conn, make_run(step("tool_call.b", tool="fetch_data"), goal="mine"), settings)
    sub = broadcaster.subscribe(mine)
    other, _ = submit_run(conn, make_run(step("tool_call.c", tool="fetch_data"), goal="other"), settings)
    kill = audit_row(conn, "worker-x")
    broadcaster.run_once(listener)
    received = sub.get_batch(0.01)
    assert {e.run_id for e in received} == {mine, None}
    assert min(e.id for e in received) > sub.start_horizon
    assert kill in [e.id for e in received] and before not in {e.run_id for e in received}
    assert other not in {e.run_id for e in received}


def test_a_subscriber_that_falls_behind_is_marked_to_resync(db_url, conn, listener):
    broadcaster = Broadcaster(db_url, queue_size=2, background=False)
    broadcaster.begin(listener)
    sub = broadcaster.subscribe()
    for i in range(3):
        audit_row(conn, f"w{i}")
    broadcaster.run_once(listener)
    assert sub.overflowed


def test_the_listener_thread_delivers_live_events(db_url, conn):
    broadcaster = Broadcaster(db_url, poll_seconds=0.2)
    sub = broadcaster.subscribe()
    try:
        event_id = audit_row(conn, "live")
        received = []
        for _ in range(50):
            received += sub.get_batch(0.2)
            if event_id in [e.id for e in received]:
                break
        assert [e.id for e in received] == [event_id]
    finally:
        broadcaster.stop()



LISTENERS = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'dae-web-live' "
             "AND datname = current_database()")


def test_the_listener_thread_reconnects_when_its_connection_is_cut_and_misses_nothing(db_url, conn):
    broadcaster = Broadcaster(db_url, poll_seconds=0.2)
    sub = broadcaster.subscribe()
    try:
        first = audit_row(conn, "before")
        assert [e.id for e in _receive(sub, {first})] == [first]
        [cut] = conn.execute(LISTENERS).fetchall()
        conn.execute("SELECT pg_terminate_backend(%s)", (cut["pid"],))
        during = audit_row(conn, "while it reconnects")
        wait_for(lambda: [r["pid"] for r in conn.execute(LISTENERS).fetchall()] not in ([], [cut["pid"]]), 10,
                 "the listener to reconnect")
        after = audit_row(conn, "after")
        assert [e.id for e in _receive(sub, {during, after})] == [during, after]
    finally:
        broadcaster.stop()


def _receive(sub: Subscription, ids: set[int], timeout: float = 10.0) -> list[Event]:
    """What a subscription gets until it has every one of `ids`."""
    received: list[Event] = []

    def has_all() -> bool:
        received.extend(sub.get_batch(0.2))
        return ids <= {e.id for e in received}
    wait_for(has_all, timeout, f"events {sorted(ids)}")
    return received
