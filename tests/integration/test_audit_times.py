"""Audit times are when the event happened, not when the writing transaction began: an outcome
recorded by a transaction that began before the step's claim is still timed after the claim's
step_started, so time order and id order agree (issue 17, point 3)."""
from __future__ import annotations

from engine import store
from engine.store import StepResult
from engine.submit import submit_run
from engine.verify import verify_run
from tests.chaos.support import run_events
from tests.helpers import make_run, step


def succeeded(claimed: store.ClaimedStep) -> list[StepResult]:
    return [StepResult(claimed.id, claimed.attempt, ok=True, output_json="{}", run_id=claimed.run_id)]


def test_an_outcome_written_by_a_transaction_begun_before_the_claim_is_timed_after_the_claim(conn, db_url, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.parent", tool="fetch_data"),
                                          step("tool_call.child", ["tool_call.parent"], tool="fetch_data")),
                           settings)
    with store.connect(db_url) as recorder, recorder.transaction():
        # This transaction's now() is fixed here, before the claim: a recorder's transaction that
        # waited on a lock while the step was claimed and its step_started committed elsewhere.
        began = recorder.execute("SELECT now() AS at").fetchone()["at"]
        (parent,) = store.step_claim(conn, "claimer", 0, 1, 60)
        store.step_record_and_claim(recorder, "claimer", 0, succeeded(parent), 0, 60)
    (child,) = store.step_claim(conn, "claimer", 0, 1, 60)
    store.step_record_and_claim(conn, "claimer", 0, succeeded(child), 0, 60)

    started, done = (next(e for e in run_events(conn, run_id, kind) if e.step_id == parent.id)
                     for kind in ("step_started", "step_succeeded"))
    assert began < started.ts < done.ts, "the success is timed when it was written, after the start"
    child_started = next(e for e in run_events(conn, run_id, "step_started") if e.step_id == child.id)
    assert child_started.ts > done.ts
    assert verify_run(conn, str(run_id)) == []
