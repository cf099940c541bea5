"""The invariant checker without a database: hand-written audit logs that break one rule each."""
from __future__ import annotations

from typing import Any

from engine.model import Event, Run, RunStatus, Step, StepStatus
from engine.verify import check_run, check_time_order, replay
from tests.records import T0, event_record, run_record, step_record

START = T0


class Log:
    """Builds an audit log of `Event` records, numbering events in order and timing each a
    millisecond after the one before (unless `ms` says when, in milliseconds after START)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, kind: str, step_id: int | None = None, attempt: int | None = None,
            detail: dict[str, Any] | None = None, ms: float | None = None) -> Log:
        number = len(self.events) + 1
        at = (number if ms is None else ms) / 1000
        self.events.append(event_record(number, kind, step_id, attempt, detail, at=at))
        return self

    def runs(self, step_id: int, attempt: int = 1) -> Log:
        return self.add("step_started", step_id, attempt).add("step_succeeded", step_id, attempt)


def step_row(step_id: int, status: StepStatus, attempt: int, parents: tuple[int, ...] = ()) -> Step:
    return step_record(step_id, status=status, attempt=attempt, depends_on=[f"tool_call.s{p}" for p in parents])


def two_step_run(status: RunStatus = RunStatus.COMPLETED, first: StepStatus = StepStatus.SUCCEEDED,
                 second: StepStatus = StepStatus.SUCCEEDED, attempts: tuple[int, int] = (1, 1)) -> Run:
    return run_record(step_row(1, first, attempts[0]), step_row(2, second, attempts[1], (1,)), status=status)


def clean_log() -> Log:
    return Log().add("run_created").add("step_ready", 1).runs(1).add("step_ready", 2).runs(2).add("run_completed")


def test_a_clean_log_has_no_problems():
    assert check_run(two_step_run(), clean_log().events) == []


def test_a_reclaim_then_a_second_attempt_replays_to_the_final_state():
    log = (Log().add("run_created").add("step_ready", 1).add("step_started", 1, 1)
           .add("step_reclaimed", 1, 1, {"reason": "worker died"}).add("step_result_discarded", 1, 1)
           .runs(1, 2).add("step_ready", 2).runs(2).add("run_completed"))
    assert check_run(two_step_run(attempts=(2, 1)), log.events) == []


def test_double_success_is_caught():
    log = (Log().add("run_created").add("step_ready", 1).add("step_started", 1, 1).add("step_started", 1, 2)
           .add("step_succeeded", 1, 2).add("step_succeeded", 1, 1)
           .add("step_ready", 2).runs(2).add("run_completed"))
    problems = check_run(two_step_run(attempts=(2, 1)), log.events)
    assert problems == ["step tool_call.s1 (1) has 2 recorded successes"]


def test_start_before_parent_succeeded_is_caught():
    log = (Log().add("run_created").add("step_ready", 1).add("step_started", 1, 1)
           .add("step_started", 2, 1).add("step_succeeded", 1, 1).add("step_succeeded", 2, 1)
           .add("run_completed"))
    problems = check_run(two_step_run(), log.events)
    assert len(problems) == 1
    assert "step tool_call.s2 (2) started (event 4) before its parent(s) [1] succeeded" in problems[0]


def test_step_status_that_does_not_match_its_events_is_caught():
    run = two_step_run(status=RunStatus.FAILED, second=StepStatus.DEAD_LETTER)
    problems = check_run(run, clean_log().events)
    assert "step tool_call.s2 (2) is dead_letter but its events replay to succeeded" in problems
    assert "run is failed but its events replay to completed" in problems


def test_attempt_that_does_not_match_its_events_is_caught():
    problems = check_run(two_step_run(attempts=(3, 1)), clean_log().events)
    assert problems == ["step tool_call.s1 (1) is at attempt 3 but its events replay to attempt 1"]


def test_attempts_that_go_backwards_are_caught():
    log = Log().add("step_ready", 1).add("step_started", 1, 2).add("step_retry_scheduled", 1, 2).add("step_started", 1, 1)
    state = replay(log.events, {1: []})
    assert state.problems == ["step tool_call.s1 (1) started attempt 1 after attempt 2: attempts must only grow"]


def test_run_status_inconsistent_with_its_steps_is_caught():
    log = Log().add("run_created").add("step_ready", 1).runs(1).add("step_ready", 2).add("run_completed")
    problems = check_run(two_step_run(second=StepStatus.READY), log.events)
    assert "run is completed but its steps are ['ready', 'succeeded']" in problems


def test_redrive_reopens_the_run_in_the_replay():
    log = (Log().add("run_created").add("step_ready", 1).add("step_started", 1, 1)
           .add("step_dead_lettered", 1, 1).add("run_failed")
           .add("step_redriven", 1, 1, {"runReopened": True}))
    state = replay(log.events, {1: []})
    assert (state.run_status, state.status[1]) == ("running", "ready")


def budget_log(late_start: bool) -> Log:
    log = (Log().add("run_created").add("step_ready", 1).runs(1).add("step_ready", 2)
           .add("limit_paused", 2, 1, {"key": "llm"})
           .add("budget_exceeded", 2, None, {"reason": "budget_exceeded"}))
    if late_start:
        log.add("step_started", 2, 1)
    return log.add("step_cancelled", 2, 1 if late_start else 0).add("run_failed", detail={"reason": "budget_exceeded"})


def test_a_run_failed_for_its_budget_with_cancelled_steps_is_consistent():
    run = two_step_run(RunStatus.FAILED, second=StepStatus.CANCELLED, attempts=(1, 0))
    assert check_run(run, budget_log(late_start=False).events) == []


def test_a_step_started_after_the_budget_was_exceeded_is_caught():
    run = two_step_run(RunStatus.FAILED, second=StepStatus.CANCELLED)
    problems = check_run(run, budget_log(late_start=True).events)
    assert any("after the run's budget was exceeded" in p for p in problems)
def test_a_child_timed_before_its_parents_success_is_caught():
    # The soak's case: the child's step_started (written after the parent's commit, so a later id)
    # carried its transaction's start time, 1.4 ms before the parent's step_succeeded.
    log = (Log().add("run_created").add("step_ready", 1).add("step_started", 1, 1)
           .add("step_succeeded", 1, 1, ms=10.0).add("step_ready", 2, ms=10.0)
           .add("step_started", 2, 1, ms=8.6).add("step_succeeded", 2, 1, ms=12.0).add("run_completed", ms=12.0))
    problems = check_run(two_step_run(), log.events)
    assert problems == ["step tool_call.s2 (2): event 6 (step_started) is timed 1.400 ms before the step's earlier event 5",
                        "step tool_call.s2 (2) started (event 6) at a time before its parent(s) [1] succeeded"]


def test_a_steps_events_timed_out_of_id_order_are_caught():
    log = Log().add("step_ready", 1, ms=5.0).add("step_started", 1, 1, ms=7.0).add("step_retry_scheduled", 1, 1, ms=6.5)
    assert check_time_order(log.events, {1: []}) == [
        "step tool_call.s1 (1): event 3 (step_retry_scheduled) is timed 0.500 ms before the step's earlier event 2"]


def test_equal_times_and_independent_events_out_of_time_order_are_not_problems():
    # Two independent steps' events and a discarded result (no transition) may interleave in time.
    log = (Log().add("step_ready", 1, ms=1.0).add("step_ready", 2, ms=1.0).add("step_started", 2, 1, ms=3.0)
           .add("step_started", 1, 1, ms=2.0).add("step_result_discarded", 1, 1, ms=1.5)
           .add("step_succeeded", 1, 1, ms=2.0))
    assert check_time_order(log.events, {1: [], 2: []}) == []
