"""The worker's loops driven one iteration at a time (`run_once`), in-process, without sleeping."""
from __future__ import annotations

import logging

from engine import store
from engine.store import StepResult
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for
from worker.worker import Worker


def test_reaper_run_once_reclaims_the_step_of_a_worker_whose_session_died(conn, settings, db_url):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    # A "worker" that registers (taking its liveness lock), claims the step, then dies: its
    # session ends, and Postgres drops the lock with it.
    with store.connect(db_url) as doomed:
        doomed_id = store.worker_register(doomed, "doomed", "test-host", 1)
        claimed = store.step_claim(doomed, "doomed", doomed_id, 1, 300)
    assert [s.name for s in claimed] == ["tool_call.a"]

    reaper_host = Worker(settings, "reaper-host", concurrency=1)
    reaper_host.liveness.get()  # registers and takes its own lock; no threads started
    try:
        # The lock is freed asynchronously after the session closes; poll run_once, no sleep needed.
        wait_for(lambda: reaper_host.reaper.run_once() == 1, 10, "the reaper to reclaim the dead worker's step")
        step_row = store.run_get(conn, run_id).steps[0]
        assert step_row.status == "ready" and step_row.attempt == 1 and step_row.reclaims == 1
        kinds = [e.type for e in store.events_recent(conn, 50)]
        assert "step_reclaimed" in kinds and "worker_lost" in kinds
        assert reaper_host.reaper.run_once() == 0  # nothing left to reclaim, and its own lock is held

        # One claim-loop iteration picks the step up again, as attempt 2.
        assert reaper_host.run_once() == 1
        wait_for(lambda: store.run_get(conn, run_id).steps[0].attempt == 2, 10, "attempt 2 to start")
    finally:
        reaper_host.shutdown.set()
        for connection in (reaper_host.claimer, reaper_host.recorder, reaper_host.reaper.conn,
                           reaper_host.side_effects, reaper_host.liveness):
            connection.close()
    assert verify_run(conn, str(run_id)) == []


def test_a_heartbeat_racing_the_recorder_reports_no_lost_lease_but_a_cancel_is_one(conn, settings, caplog):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data"), step("tool_call.b", tool="fetch_data")),
                           settings)
    worker = Worker(settings, "racer", concurrency=2)
    worker.liveness.get()  # registers; no threads: this test plays the slot and the recorder
    try:
        assert worker.run_once() == 2
        flights = sorted(worker.table.flights.values(), key=lambda f: f.step.name)
        a = flights[0]
        worker.table.finish(a, StepResult(a.step.id, a.step.attempt, ok=True, output_json="{}", run_id=a.step.run_id))
        batch = [worker.table.results.get_nowait()]
        # The recorder commits a's outcome while the heartbeat is between its snapshot and its
        # check: a is no longer running in the database, but this worker recorded it.
        limit = worker.table.begin_recording(batch, claiming=False)
        store.step_record_and_claim(worker.recorder.get(), worker.name, worker.worker_id, batch, limit,
                                    settings.lease_seconds)
        with caplog.at_level(logging.WARNING, logger="worker"):
            assert worker.reaper.heartbeat(worker.reaper.conn.get()) == []
            assert "lease lost" not in caplog.text
            worker.table.end_recording(batch, limit)

            store.run_cancel(conn, run_id, by="test")  # b's lease really is taken away
            assert worker.reaper.heartbeat(worker.reaper.conn.get()) == [flights[1].step.id]
            assert "lease lost" in caplog.text and flights[1].ctx.cancelled.is_set()
    finally:
        worker.shutdown.set()
        for connection in (worker.claimer, worker.recorder, worker.reaper.conn, worker.side_effects, worker.liveness):
            connection.close()
    assert verify_run(conn, str(run_id)) == []
