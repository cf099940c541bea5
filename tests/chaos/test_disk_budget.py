"""Disk (issue 13, point 8): the runs' data has a budget. Past DATA_BUDGET_MB the oldest finished
runs are pruned whatever their age (active runs never), and one run cannot store more than
MAX_RUN_OUTPUT_BYTES of outputs, which with MAX_ACTIVE_RUNS bounds what active runs hold. Real
Postgres and a real worker, whose reaper does the pruning."""
from __future__ import annotations

import os

import pytest

from engine import store
from engine.model import StepStatus
from engine.store.maintenance import runs_data_bytes
from engine.submit import submit_run
from engine.verify import verify_all
from tests.chaos.support import assert_invariants, wait_registered, wait_terminal
from tests.chaos.test_memory_bounds import doubling_ladder
from tests.helpers import make_run, step, wait_for

pytestmark = pytest.mark.chaos

MB = 1024 * 1024


def bulky_run(index: int) -> dict:
    """A run with 60 KB of input that compresses poorly, as the issue's probe sent."""
    return make_run(step("tool_call.a", tool="sleep", seconds=600, blob=os.urandom(30_000).hex()), goal=f"bulky {index}")


def test_past_the_data_budget_the_oldest_finished_runs_are_pruned_and_active_ones_kept(conn, settings, spawn):
    finished = []
    for i in range(40):
        run_id, _ = submit_run(conn, bulky_run(i), settings)
        store.run_cancel(conn, run_id)  # finished, oldest first
        finished.append(str(run_id))
    active = [str(submit_run(conn, bulky_run(100 + i), settings)[0]) for i in range(3)]
    assert runs_data_bytes(conn) > 2 * MB
    # A worker whose reaper prunes as it starts. The active runs' 10-minute sleeps keep them active.
    procs = [spawn("w1", 1, DATA_BUDGET_MB="1", RETENTION_HOURS="24")]
    wait_registered(conn, *procs)
    wait_for(lambda: runs_data_bytes(conn) <= MB, 30, "the data to be pruned under its budget", interval=0.2)
    kept = set(store.run_ids(conn))
    assert set(active) <= kept
    kept_finished = [r for r in finished if r in kept]
    assert kept_finished == finished[len(finished) - len(kept_finished):], "not the oldest first"
    assert 0 < len(kept_finished) < len(finished)
    for run_id in active:
        store.run_cancel(conn, run_id)
    assert verify_all(conn) == {}


def test_a_run_cannot_store_more_than_its_output_budget(conn, settings, spawn):
    procs = [spawn("w1", 8, MAX_RUN_OUTPUT_BYTES="150000")]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, doubling_ladder(6, 2), settings)
    assert wait_terminal(conn, [run_id], 60) == {str(run_id): "failed"}
    dead = [s for s in store.run_get(conn, run_id).steps if s.status == StepStatus.DEAD_LETTER]
    assert dead and all("more than MAX_RUN_OUTPUT_BYTES (150000)" in s.error for s in dead), dead
    assert_invariants(conn, [run_id])
