"""The run page's pictures: the layered DAG layout and the attempt timeline (no database)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from app.dag_svg import NODE_WIDTH, dag_picture
from app.timeline import attempt_spans, timeline_picture
from engine.model import Event, RunStatus, Step, StepStatus
from tests.records import run_record, step_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def step(step_id: int, name: str, depends_on: list[str] = (), status: StepStatus = StepStatus.PENDING,
         attempt: int = 0) -> Step:
    return step_record(step_id, name, status, attempt, depends_on)


def event(event_id: int, kind: str, at: float, step_id: int | None = None, attempt: int | None = None,
          worker: str | None = None, detail: dict | None = None) -> Event:
    return Event(event_id, kind, uuid4() if step_id else None, step_id, f"tool_call.s{step_id}" if step_id else None,
                 attempt, worker, T0 + timedelta(seconds=at), detail)


def test_dag_columns_follow_depth_and_a_fan_in_sits_right_of_its_parents():
    steps = [step(1, "tool_call.a"), step(2, "tool_call.b"), step(3, "tool_call.c", ["tool_call.a", "tool_call.b"]),
             step(4, "llm_call.d", ["tool_call.c"])]
    picture = dag_picture(steps)
    x = {n.name: n.x for n in picture.nodes}
    assert x["tool_call.a"] == x["tool_call.b"] < x["tool_call.c"] < x["llm_call.d"]
    assert len(picture.edges) == 3
    assert picture.width >= 3 * NODE_WIDTH


def test_dag_shows_a_failed_ready_step_as_retrying():
    picture = dag_picture([step(1, "tool_call.a", status=StepStatus.READY, attempt=2),
                           step(2, "tool_call.b", status=StepStatus.READY)])
    assert {n.name: n.status for n in picture.nodes} == {"tool_call.a": "retrying", "tool_call.b": "ready"}


def test_each_attempt_is_a_span_closed_by_the_event_that_ended_it():
    events = [
        event(1, "step_started", 0, 1, 1, "w1"),
        event(2, "step_retry_scheduled", 1, 1, 1, "w1", {"error": "boom"}),
        event(3, "step_started", 2, 1, 2, "w2"),
        event(4, "step_reclaimed", 3, 1, 2, "w2", {"reason": "worker died"}),
        event(5, "step_started", 4, 1, 3, "w1"),
        event(6, "step_succeeded", 5, 1, 3, "w1"),
        event(7, "step_started", 5, 2, 1, "w1"),
    ]
    spans = attempt_spans(events)
    assert [(s.attempt, s.worker, s.outcome) for s in spans] == [
        (1, "w1", "failed"), (2, "w2", "lost"), (3, "w1", "succeeded"), (1, "w1", "running")]
    assert spans[0].note == "boom"


def test_an_attempt_whose_reclaim_dead_lettered_the_step_ends_as_dead():
    events = [event(1, "step_started", 0, 1, 3, "w1"), event(2, "step_reclaimed", 1, 1, 3, "w1"),
              event(3, "step_dead_lettered", 1, 1, 3, "w1", {"error": "worker crashed 3 times"})]
    assert [s.outcome for s in attempt_spans(events)] == ["dead"]


def test_timeline_has_a_lane_per_worker_bars_per_attempt_and_markers():
    run = run_record(status=RunStatus.COMPLETED, created_at=T0, finished_at=T0 + timedelta(seconds=10))
    events = [
        event(1, "step_started", 0, 1, 1, "w1"), event(2, "step_started", 0.5, 2, 1, "w1"),
        event(3, "step_reclaimed", 2, 1, 1, "w1", {"reason": "worker died"}),
        event(4, "step_reclaimed", 2, 2, 1, "w1", {"reason": "worker died"}),
        event(5, "step_started", 2.1, 1, 2, "w2"), event(6, "step_succeeded", 3, 1, 2, "w2"),
        event(7, "step_result_discarded", 4, 2, 1, "w1"),
    ]
    markers = [event(8, "worker_kill_requested", 1.9, worker="w1", detail={"pid": 7, "via": "signal"}),
               event(9, "worker_lost", 2, worker="w1")]
    picture = timeline_picture(run, events, markers, T0 + timedelta(seconds=10))
    assert [lane[0] for lane in picture.lanes] == ["w1", "w2"]
    assert [b.outcome for b in picture.bars] == ["lost", "lost", "succeeded"]
    w1_bars = [b for b in picture.bars if b.outcome == "lost"]
    assert w1_bars[0].y != w1_bars[1].y, "overlapping attempts of one worker get their own rows"
    assert sorted(m.kind for m in picture.markers) == ["discarded", "kill", "lost", "reclaimed", "reclaimed"]
    assert all(picture.label_width <= b.x <= picture.width for b in picture.bars)
    assert picture.ticks[0][1] == "0s"
