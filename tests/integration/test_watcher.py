"""Event-driven crash detection (`worker.watcher`): a watcher blocked on a worker's liveness lock
reclaims that worker's steps when its session ends; a frozen worker (session alive) is still
released by lease expiry. In-process, with the reaper's poll not running, so the reclaim seen is
the watcher's (or, for the frozen worker, the lease sweep's)."""
from __future__ import annotations

import threading

import psycopg
import pytest

from engine import store
from engine.model import StepStatus
from engine.pgcluster import PgCluster
from engine.store import watch
from engine.store.workers import LIVENESS_LOCK_CLASS
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for
from worker.worker import Worker


def _host(settings: object, name: str) -> Worker:
    worker = Worker(settings, name, concurrency=1)  # type: ignore[arg-type]
    worker.liveness.get()  # registers and takes its own lock; no threads started
    return worker


def _close(worker: Worker) -> None:
    worker.shutdown.set()
    for connection in (worker.claimer, worker.recorder, worker.reaper.conn, worker.watcher.conn,
                       worker.side_effects.conn, worker.liveness):
        connection.close()


def _someone_waits_for_lock(conn: object, worker_id: int) -> bool:
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid = %s AND objid = %s", (LIVENESS_LOCK_CLASS, worker_id)).fetchone()
    return row["n"] > 0


def test_the_watcher_wakes_when_the_watched_session_dies_and_reclaims_its_steps(conn, settings, db_url):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    doomed = store.connect(db_url)
    doomed_id = store.worker_register(doomed, "doomed", "test-host", 1)
    assert [s.name for s in store.step_claim(doomed, "doomed", doomed_id, 1, 300)] == ["tool_call.a"]
    host = _host(settings, "watcher-host")
    woke: list[float] = []
    try:
        assert watch.worker_to_watch(conn, host.worker_id) == doomed_id
        watching = threading.Thread(target=lambda: woke.append(host.watcher.run_once(wait_seconds=60)))
        watching.start()
        # The watcher is blocked on the doomed worker's lock before the doomed session ends.
        wait_for(lambda: _someone_waits_for_lock(conn, doomed_id), 10, "the watcher to wait on the lock")
        doomed.close()
        watching.join(30)
        assert woke == [0.0] and not watching.is_alive()
    finally:
        _close(host)
    row = store.run_get(conn, run_id).steps[0]
    assert row.status == StepStatus.READY and row.reclaims == 1
    kinds = [e.type for e in store.events_after(conn, str(run_id), 0)]
    assert kinds.count("step_reclaimed") == 1
    assert verify_run(conn, str(run_id)) == []


def test_a_frozen_worker_keeps_its_lock_so_the_watcher_waits_and_the_lease_releases_its_step(conn, settings, db_url):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    frozen = store.connect(db_url)  # alive but doing nothing: its session and lock stay
    frozen_id = store.worker_register(frozen, "frozen", "test-host", 1)
    store.step_claim(frozen, "frozen", frozen_id, 1, 0.5)  # a short lease, never renewed
    host = _host(settings, "watcher-host")
    try:
        assert host.watcher.run_once(wait_seconds=0.2) == 0.0  # timed out: still alive
        assert store.run_get(conn, run_id).steps[0].status == StepStatus.RUNNING
        wait_for(lambda: host.reaper.run_once() == 1, 15, "the lease sweep to release the frozen worker's step")
    finally:
        _close(host)
        frozen.close()
    row = store.run_get(conn, run_id).steps[0]
    assert row.status == StepStatus.READY and row.reclaims == 1
    reclaimed = [e for e in store.events_after(conn, str(run_id), 0) if e.type == "step_reclaimed"]
    assert [e.detail["reason"] for e in reclaimed] == ["lease expired"]
    assert verify_run(conn, str(run_id)) == []


def test_a_worker_alone_has_nobody_to_watch(conn, settings):
    host = _host(settings, "alone")
    try:
        assert watch.worker_to_watch(conn, host.worker_id) is None
        assert host.watcher.run_once() == settings.reaper_interval_seconds
    finally:
        _close(host)


def test_a_watch_that_times_out_logs_no_error_on_the_server(pg: PgCluster, conn, settings, db_url):
    """Every timed-out watch of a live worker used to log `ERROR: canceling statement due to lock
    timeout` on the server (every 2 s per worker); the wait now ends without a server-side error."""
    alive = store.connect(db_url)  # a live neighbour: its lock stays held, so each watch times out
    alive_id = store.worker_register(alive, "alive", "test-host", 1)
    host = _host(settings, "watcher-host")
    log_start = pg.logfile.stat().st_size
    try:
        assert watch.worker_to_watch(conn, host.worker_id) == alive_id
        for _ in range(5):
            assert host.watcher.run_once(wait_seconds=0.05) == 0.0  # timed out: still alive
        assert _server_log_since(pg, log_start).count(LOCK_TIMEOUT_ERROR) == 0
        # The same bounded wait as a plain statement does log the error: the check above can fail.
        with store.connect(db_url) as plain, pytest.raises(psycopg.errors.LockNotAvailable):
            plain.execute("SET lock_timeout = '50ms'")
            plain.execute("SELECT pg_advisory_lock(%s, %s)", (LIVENESS_LOCK_CLASS, alive_id))
        wait_for(lambda: LOCK_TIMEOUT_ERROR in _server_log_since(pg, log_start), 10, "the plain wait's ERROR in the log")
    finally:
        _close(host)
        alive.close()


LOCK_TIMEOUT_ERROR = "canceling statement due to lock timeout"


def _server_log_since(pg: PgCluster, offset: int) -> str:
    with pg.logfile.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")
