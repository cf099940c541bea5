"""A Postgres restart is the infrastructure's fault, never the user's (issue 17): tool steps that
touch the database across the restart use up no attempt, and a worker that really dies during the
restart grace is found dead at once instead of after the grace or its lease."""
from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import psycopg
import pytest

from engine import store
from engine.config import Settings
from engine.pgcluster import PgCluster
from engine.store import Event, connect
from engine.submit import submit_run
from tests.chaos.support import (
    assert_invariants,
    kill_and_time,
    run_events,
    victim_and_survivor,
    wait_event,
    wait_registered,
    wait_terminal,
    worker_events,
)
from tests.helpers import WorkerProcess, make_run, step, wait_for

pytestmark = pytest.mark.chaos

# Leases and the grace far longer than the test: only the paths under test can reclaim anything.
SLOW_FALLBACKS = {"LEASE_SECONDS": "60", "HEARTBEAT_SECONDS": "1", "RESTART_GRACE_SECONDS": "60"}


def _tool_run(i: int) -> dict:
    """Every step has a single attempt: a failure of any kind would fail the run."""
    return make_run(
        step("tool_call.tell_first", tool="notify", message=f"run {i} started", max_attempts=1),
        step("tool_call.fetch", tool="fetch_data", query=f"topic {i}", sleepSeconds=0.5, max_attempts=1),
        # Asleep when Postgres restarts; its notify then meets a connection the restart closed.
        step("tool_call.tell_late", ["tool_call.tell_first"], tool="notify", sleepSeconds=2.5, max_attempts=1),
        step("tool_call.merge", ["tool_call.fetch", "tool_call.tell_late"], tool="transform", max_attempts=1),
        step("tool_call.pause", ["tool_call.merge"], tool="sleep", seconds=0.3, max_attempts=1),
        step("tool_call.tell_last", ["tool_call.pause"], tool="notify", max_attempts=1),
        goal=f"tool steps with one attempt each, {i}")


def test_tool_steps_with_one_attempt_all_complete_across_a_postgres_crash(pg: PgCluster, db_url: str, settings,
                                                                           spawn) -> None:
    procs = [spawn("w1", 4, **SLOW_FALLBACKS), spawn("w2", 4, **SLOW_FALLBACKS)]
    with connect(db_url) as conn:
        wait_registered(conn, *procs)
        run_ids = [submit_run(conn, _tool_run(i), settings)[0] for i in range(6)]
        wait_for(lambda: _running(conn, run_ids, "tool_call.tell_late") >= 4, 30, "notify steps asleep on both workers")

    pg.restart(mode="immediate")

    with connect(db_url) as conn:
        statuses = wait_terminal(conn, run_ids, 60)
        assert set(statuses.values()) == {"completed"}, statuses
        for run_id in run_ids:
            failures = [e.type for e in run_events(conn, run_id) if e.type in ("step_retry_scheduled", "step_dead_lettered")]
            assert not failures, f"run {run_id}: the restart cost attempts: {failures}"
        assert not worker_events(conn, "worker_lost"), "a live worker was taken for dead after the restart"
        assert_invariants(conn, run_ids)
    retried = sum(p.output().count("retrying on a fresh connection") for p in procs)
    assert retried, "no notify met the connection the restart closed; the test did not test anything"


def _running(conn: psycopg.Connection, run_ids: list, name: str) -> int:
    return sum(s.status == "running" and s.name == name for r in run_ids for s in store.run_get(conn, str(r)).steps)


def _a_long_step_on_each_worker(db_url: str, settings: Settings,
                                spawn: Callable[..., WorkerProcess]) -> tuple[UUID, WorkerProcess, WorkerProcess]:
    """Two one-slot workers each running a 6 s step of one run; returns the run, the worker that
    started first (the one the test kills or freezes) and the other."""
    procs = [spawn("w1", 1, **SLOW_FALLBACKS), spawn("w2", 1, **SLOW_FALLBACKS)]
    run = make_run(*[step(f"tool_call.long{i}", tool="sleep", seconds=6, max_attempts=2) for i in range(2)],
                   goal="long steps across a restart")
    with connect(db_url) as conn:
        wait_registered(conn, *procs)
        run_id, _ = submit_run(conn, run, settings)
        wait_for(lambda: len(run_events(conn, run_id, "step_started")) == 2, 20, "a long step on each worker")
        return (run_id, *victim_and_survivor(procs, run_events(conn, run_id, "step_started")[0]))


def _relocked(conn: psycopg.Connection, *procs: WorkerProcess) -> bool:
    """Each process's incarnation has re-taken its liveness lock since the postmaster started."""
    rows = conn.execute("SELECT pid FROM workers WHERE lock_taken_at > pg_postmaster_start_time()").fetchall()
    return {p.pid for p in procs} <= {r["pid"] for r in rows}


def _seconds_up(conn: psycopg.Connection) -> float:
    return conn.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS up").fetchone()["up"]


def _lost_event(conn: psycopg.Connection, name: str) -> Event | None:
    return next((e for e in worker_events(conn, "worker_lost") if e.worker == name), None)


def test_a_worker_killed_two_seconds_after_a_postgres_restart_is_reclaimed_at_once(pg: PgCluster, db_url: str,
                                                                                    settings, spawn, capsys) -> None:
    run_id, victim, survivor = _a_long_step_on_each_worker(db_url, settings, spawn)

    pg.restart(mode="immediate")

    with connect(db_url) as conn:
        wait_for(lambda: _relocked(conn, victim, survivor) and _seconds_up(conn) >= 2.0, 20,
                 "both workers to re-take their locks, and 2 s to pass since the restart")
        killed_at = kill_and_time(victim)
        reclaimed = wait_event(conn, run_id, "step_reclaimed", 20)
        lost = wait_for(lambda: _lost_event(conn, victim.name), 20, f"worker_lost of {victim.name}")

        assert reclaimed.worker == victim.name
        assert reclaimed.detail["reason"] == "worker died", "reclaimed by its free liveness lock, not its lease"
        with capsys.disabled():
            print(f"\n  kill -9 {_seconds_up_at(conn, killed_at):.1f}s after the restart -> step_reclaimed "
                  f"{reclaimed.ts.timestamp() - killed_at:.3f}s, worker_lost {lost.ts.timestamp() - killed_at:.3f}s")
        assert wait_terminal(conn, [run_id], 40)[str(run_id)] == "completed"
        assert _lost_event(conn, survivor.name) is None, "the live worker was taken for dead"
        assert_invariants(conn, [run_id])


def test_a_worker_that_never_re_takes_its_lock_is_dead_soon_after_the_others_did(pg: PgCluster, db_url: str,
                                                                                  settings, spawn, capsys) -> None:
    run_id, victim, survivor = _a_long_step_on_each_worker(db_url, settings, spawn)
    # Frozen through the restart, the victim keeps its lock until the restart drops it and can
    # never take it again: dead, though nothing told Postgres so at the time.
    victim.signal(signal.SIGSTOP)
    try:
        pg.restart(mode="immediate")
        with connect(db_url) as conn:
            lost = wait_for(lambda: _lost_event(conn, victim.name), 30, f"worker_lost of {victim.name}")
            reclaimed = wait_event(conn, run_id, "step_reclaimed", 10)
            assert reclaimed.detail["reason"] == "worker died", "reclaimed by the relock window, not the lease"
            relocked = conn.execute("SELECT min(lock_taken_at) AS at FROM workers "
                                    "WHERE lock_taken_at > pg_postmaster_start_time()").fetchone()["at"]
            started = conn.execute("SELECT pg_postmaster_start_time() AS at").fetchone()["at"]
            with capsys.disabled():
                print(f"\n  restart -> first lock re-taken {_between(started, relocked):.3f}s -> "
                      f"{victim.name} lost {_between(relocked, lost.ts):.3f}s later "
                      f"({_between(started, lost.ts):.3f}s after the restart; grace 60 s, lease 60 s)")
            assert _lost_event(conn, survivor.name) is None, "the live worker was taken for dead"
    finally:
        victim.kill()
    with connect(db_url) as conn:
        assert wait_terminal(conn, [run_id], 40)[str(run_id)] == "completed"
        assert_invariants(conn, [run_id])


def _between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


def _seconds_up_at(conn: psycopg.Connection, wall_time: float) -> float:
    started = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())::float8 AS at").fetchone()["at"]
    return wall_time - started

