"""The run page's pictures: the layered DAG layout and the attempt timeline (no database)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from app.dag_svg import NARROW_SIDE_LANE, NARROW_WIDTH, NODE_WIDTH, blocked_steps, dag_picture
from app.timeline import NARROW, TICK_CHAR, WIDE, attempt_spans, timeline_picture
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
    assert picture.ticks[0].label == "0s"


def test_simultaneous_reclaims_sit_on_their_own_bars_and_the_kill_above_them():
    run = run_record(status=RunStatus.COMPLETED, created_at=T0, finished_at=T0 + timedelta(seconds=10))
    events = [event(i, "step_started", 0.1 * i, i, 1, "w1") for i in (1, 2, 3)]
    events += [event(10 + i, "step_reclaimed", 2, i, 1, "w1", {"reason": "worker died"}) for i in (1, 2, 3)]
    kill = [event(20, "worker_kill_requested", 1.9, worker="w1", detail={"pid": 7, "via": "signal"})]
    picture = timeline_picture(run, events, kill, T0 + timedelta(seconds=10))
    crosses = [m for m in picture.markers if m.kind == "reclaimed"]
    assert len({m.y for m in crosses}) == 3, "three reclaims at one moment are three visible marks"
    assert sorted(m.y for m in crosses) == sorted(b.y + picture.bar_height / 2 for b in picture.bars)
    bolt = next(m for m in picture.markers if m.kind == "kill")
    assert bolt.y + 7 <= min(b.y for b in picture.bars), "the bolt is drawn above the bars, not over a cross"


def test_tick_labels_stay_inside_and_short_attempts_stay_visible_in_both_frames():
    run = run_record(status=RunStatus.COMPLETED, created_at=T0, finished_at=T0 + timedelta(seconds=20))
    events = [event(1, "step_started", 0, 1, 1, "w1"), event(2, "step_succeeded", 0.01, 1, 1, "w1"),
              event(3, "step_started", 19, 2, 1, "w1"), event(4, "step_succeeded", 20, 2, 1, "w1")]
    for frame in (WIDE, NARROW):
        picture = timeline_picture(run, events, [], T0 + timedelta(seconds=20), frame)
        assert picture.ticks[-1].label == "20s"
        for tick in picture.ticks:
            right = tick.x + 3 + len(tick.label) * TICK_CHAR if tick.anchor == "start" else tick.x
            assert right <= frame.width, f"tick {tick.label} is cut off at {frame.width}"
        assert picture.bars[0].width >= frame.min_bar
        assert all(b.x + b.width <= frame.width for b in picture.bars)
    # a sliver widened to min_bar is not covered by the attempt that follows it on the same worker
    events = [event(1, "step_started", 0, 1, 1, "w1"), event(2, "step_succeeded", 0.001, 1, 1, "w1"),
              event(3, "step_started", 0.002, 2, 1, "w1"), event(4, "step_succeeded", 20, 2, 1, "w1")]
    first, second = timeline_picture(run, events, [], T0 + timedelta(seconds=20), NARROW).bars
    assert first.y != second.y or first.x + first.width <= second.x


def test_an_attempt_longer_than_its_lease_shows_where_the_lease_ran_out_and_its_last_heartbeat():
    run = run_record(created_at=T0)
    events = [event(1, "step_started", 1, 7, 1, "w1"), event(2, "step_started", 2, 8, 1, "w1"),
              event(3, "step_succeeded", 3, 8, 1, "w1")]
    now = T0 + timedelta(seconds=20)
    leases = {7: now + timedelta(seconds=13)}  # renewed 2 s ago with a 15 s lease
    picture = timeline_picture(run, events, [], now, lease_seconds=15, leases=leases)
    lease = [m for m in picture.markers if m.kind == "lease"]
    beat = [m for m in picture.markers if m.kind == "heartbeat"]
    assert len(lease) == 1 and len(beat) == 1, "only the long attempt gets marks"
    bar = picture.bars[0]
    assert bar.x < lease[0].x < beat[0].x <= bar.x + bar.width
    assert "15 s" in lease[0].title


def test_dag_on_a_phone_is_vertical_two_nodes_a_row_and_no_wider_than_a_phone_card():
    steps = [step(i, f"tool_call.fetch_{i}") for i in range(1, 6)]
    steps += [step(9, "tool_call.merge", [s.name for s in steps]), step(10, "llm_call.summarize", ["tool_call.merge"])]
    picture = dag_picture(steps, vertical=True)
    assert picture.width <= NARROW_WIDTH
    assert all(0 <= n.x and n.x + picture.node_width <= picture.width for n in picture.nodes)
    y = {n.name: n.y for n in picture.nodes}
    assert y["tool_call.fetch_5"] > y["tool_call.fetch_1"], "a wide layer wraps onto more rows"
    assert max(y[f"tool_call.fetch_{i}"] for i in range(1, 6)) < y["tool_call.merge"] < y["llm_call.summarize"]
    rows = {}
    for n in picture.nodes:
        rows.setdefault(n.y, []).append(n)
    assert max(len(r) for r in rows.values()) <= 2
    # fetch_1 and fetch_2 sit above fetch_3: their edges to merge run down the side lanes, not behind it
    lanes = {f"L{NARROW_SIDE_LANE:.1f}", f"L{NARROW_WIDTH - NARROW_SIDE_LANE:.1f}"}
    side = [e for e in picture.edges if any(lane in e.path for lane in lanes)]
    assert len(side) == 4, "the four fetches of the first row go round the second row"


def test_steps_behind_a_dead_letter_are_blocked_not_pending():
    steps = [step(1, "tool_call.a", status=StepStatus.DEAD_LETTER, attempt=3), step(2, "tool_call.b", ["tool_call.a"]),
             step(3, "tool_call.c", ["tool_call.b"]), step(4, "tool_call.d"), step(5, "tool_call.e", ["tool_call.d"])]
    assert blocked_steps(steps) == {"tool_call.b", "tool_call.c"}
    statuses = {n.name: n.status for n in dag_picture(steps).nodes}
    assert statuses == {"tool_call.a": "dead_letter", "tool_call.b": "blocked", "tool_call.c": "blocked",
                        "tool_call.d": "pending", "tool_call.e": "pending"}
    assert {n.status for n in dag_picture(steps, run_status=RunStatus.FAILED).nodes} == {"dead_letter", "blocked"}
