"""A wait's timeout is kept by the database's clock, so it fires after Postgres crashes and
restarts (`pg_ctl restart -m immediate`) in the middle of the wait, and after the worker that saw
the wait begin is gone."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine import store
from engine.store import connect
from engine.submit import submit_run
from engine.verify import verify_all
from tests.chaos.support import run_events, wait_event, wait_registered
from tests.helpers import make_run, step, wait_for

pytestmark = pytest.mark.chaos

WORKER_ENV = {"RESTART_GRACE_SECONDS": "10"}


def test_wait_timeout_fires_after_postgres_immediate_restart(pg, db_url, settings, spawn):
    body = make_run(step("tool_call.draft", tool="fetch_data"),
                    {"name": "wait.approve", "dependsOn": ["tool_call.draft"],
                     "input": {"prompt": "Approve?", "timeoutSeconds": 4, "onTimeout": "continue"}},
                    step("tool_call.after", ["wait.approve"], tool="transform"))
    first = spawn("w1", **WORKER_ENV)
    with connect(db_url) as conn:
        wait_registered(conn, first)
        run_id, _ = submit_run(conn, body, settings)
        waiting = wait_event(conn, run_id, "step_waiting", 30)
    first.kill()  # the worker that saw the wait begin is gone for good

    pg.restart(mode="immediate")

    spawn("w2", **WORKER_ENV)
    with connect(db_url) as conn:
        timed_out = wait_event(conn, run_id, "step_timed_out", 60)
        # Not before the expiry the database computed when the wait began.
        assert timed_out.ts >= datetime.fromisoformat(waiting.detail["expiresAt"])
        wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "the run to complete")
        assert len(run_events(conn, run_id, "step_timed_out")) == 1
        assert verify_all(conn) == {}
