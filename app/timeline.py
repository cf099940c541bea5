"""Geometry of the attempt timeline on the run page: a lane per worker, a bar per attempt coloured by
its outcome, and markers where a step was reclaimed, a late result discarded, a worker lost or a
kill requested. Built from the run's audit events alone, so it tells the same story as the log.
The template `_timeline.html` turns it into SVG."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from engine.model import Event, Run, StepStatus

WIDTH = 960.0
LABEL_WIDTH = 104.0
RIGHT_PAD = 10.0
AXIS_HEIGHT = 22.0
BAR_HEIGHT = 14.0
BAR_PITCH = 17.0
LANE_PAD = 8.0
MIN_BAR = 2.5
TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

# Which event ends an attempt, and as what.
ENDINGS = {"step_succeeded": "succeeded", "step_retry_scheduled": "failed", "step_dead_lettered": "dead",
           "step_reclaimed": "lost", "step_cancelled": "cancelled"}
MARKERS = {"step_reclaimed": "reclaimed", "step_result_discarded": "discarded", "worker_lost": "lost",
           "worker_kill_requested": "kill"}


@dataclass
class Span:
    step: str
    attempt: int
    worker: str
    start: datetime
    end: datetime | None = None
    outcome: str = StepStatus.RUNNING.value  # until the event that ends the attempt
    note: str = ""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    outcome: str
    label: str
    title: str


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    kind: str
    title: str


@dataclass
class TimelinePicture:
    lanes: list[tuple[str, float, float]] = field(default_factory=list)  # (worker, top, height)
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    width: float = WIDTH
    height: float = AXIS_HEIGHT
    label_width: float = LABEL_WIDTH
    bar_height: float = BAR_HEIGHT


def attempt_spans(events: list[Event]) -> list[Span]:
    """One span per started attempt, closed by the event that ended it (if any yet). An attempt
    whose reclaim also dead-lettered the step ends as dead: that was the last straw."""
    spans: list[Span] = []
    open_spans: dict[tuple[int, int], Span] = {}
    closed: dict[tuple[int, int], Span] = {}
    for event in events:
        key = (event.step_id or 0, event.attempt or 0)
        if event.type == "step_started":
            open_spans[key] = Span(event.step or "?", event.attempt or 0, event.worker or "?", event.ts)
            spans.append(open_spans[key])
        elif event.type in ENDINGS and key in open_spans:
            closed[key] = span = open_spans.pop(key)
            _close(span, event)
        elif event.type == "step_dead_lettered" and key in closed:
            closed[key].outcome = "dead"
    return spans


def _close(span: Span, event: Event) -> None:
    detail = event.detail or {}
    span.end, span.outcome = event.ts, ENDINGS[event.type]
    if event.type == "step_reclaimed" and detail.get("countsAsAttempt") is False:
        span.outcome = "released"
    span.note = str(detail.get("error") or detail.get("reason") or "")


def timeline_picture(run: Run, events: list[Event], worker_events: list[Event],
                     now: datetime) -> TimelinePicture:
    """The picture of a run from its events and the lifecycle
    events of the workers that ran it; `now` ends the bars of attempts still running."""
    spans = attempt_spans(events)
    axis = _Axis.of(run, spans, now)
    picture = TimelinePicture(ticks=_ticks(axis.seconds, axis.scale))
    rows = _pack_rows(spans, now)
    lanes = _lanes(spans, rows)
    picture.lanes = [(worker, top, height) for worker, (top, height) in lanes.items()]
    for span in spans:
        top, _ = lanes[span.worker]
        x = axis.x(span.start)
        picture.bars.append(Bar(x, top + LANE_PAD + rows[id(span)] * BAR_PITCH,
                                max(MIN_BAR, axis.x(span.end or now) - x), span.outcome,
                                span.step.split(".", 1)[-1], _bar_title(span, now)))
    for event in [*events, *worker_events]:
        if event.type in MARKERS and event.worker in lanes:
            top, height = lanes[event.worker]
            kind = MARKERS[event.type]
            y = top + LANE_PAD if kind == "kill" else top + height / 2  # the bolt above the crosses
            picture.markers.append(Marker(axis.x(event.ts), y, kind, _marker_title(event)))
    picture.height = AXIS_HEIGHT + sum(height for _, height in lanes.values()) + 4
    return picture


@dataclass(frozen=True)
class _Axis:
    start: datetime
    seconds: float
    scale: float  # SVG units per second

    @classmethod
    def of(cls, run: Run, spans: list[Span], now: datetime) -> _Axis:
        """From the run's creation to its end (or now), wide enough for every attempt."""
        start = run.created_at
        end = run.finished_at or now
        end = max([end, *(s.end or now for s in spans)])
        seconds = max((end - start).total_seconds(), 1.0)
        return cls(start, seconds, (WIDTH - LABEL_WIDTH - RIGHT_PAD) / seconds)

    def x(self, moment: datetime) -> float:
        return LABEL_WIDTH + max(0.0, (moment - self.start).total_seconds()) * self.scale


def _lanes(spans: list[Span], rows: dict[int, int]) -> dict[str, tuple[float, float]]:
    """(top, height) of each worker's lane, in order of first attempt, tall enough for its rows."""
    lanes: dict[str, tuple[float, float]] = {}
    top = AXIS_HEIGHT
    for worker in dict.fromkeys(s.worker for s in spans):
        count = 1 + max(rows[id(s)] for s in spans if s.worker == worker)
        height = 2 * LANE_PAD + count * BAR_PITCH - (BAR_PITCH - BAR_HEIGHT)
        lanes[worker] = (top, height)
        top += height
    return lanes


def _pack_rows(spans: list[Span], now: datetime) -> dict[int, int]:
    """Row inside its lane for each span: the first row free at its start (interval partitioning)."""
    rows: dict[int, int] = {}
    ends: dict[str, list[datetime]] = {}
    for span in sorted(spans, key=lambda s: s.start):
        lane = ends.setdefault(span.worker, [])
        row = next((i for i, busy_until in enumerate(lane) if busy_until <= span.start), len(lane))
        if row == len(lane):
            lane.append(span.end or now)
        else:
            lane[row] = span.end or now
        rows[id(span)] = row
    return rows


def _ticks(seconds: float, scale: float) -> list[tuple[float, str]]:
    step = next((s for s in TICK_STEPS if seconds / s <= 8), TICK_STEPS[-1])
    ticks = []
    value = 0.0
    while value <= seconds + 1e-9:
        ticks.append((LABEL_WIDTH + value * scale, _duration(value)))
        value += step
    return ticks


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def _bar_title(span: Span, now: datetime) -> str:
    took = ((span.end or now) - span.start).total_seconds()
    text = f"{span.step} · attempt {span.attempt} · {span.outcome} · {took:.2f}s on {span.worker}"
    return f"{text} — {span.note[:200]}" if span.note else text


def _marker_title(event: Event) -> str:
    detail = event.detail or {}
    what = {"step_reclaimed": f"{event.step} reclaimed from {event.worker} ({detail.get('reason', '')})",
            "step_result_discarded": f"late result of {event.step} attempt {event.attempt} discarded",
            "worker_lost": f"{event.worker} lost (process gone)",
            "worker_kill_requested": f"kill requested for {event.worker} (pid {detail.get('pid')}, "
                                     f"via {detail.get('via')})"}
    return what.get(event.type, event.type)
