"""Geometry of the attempt timeline on the run page: a lane per worker, a bar per attempt coloured by
its outcome, and markers: where a step was reclaimed or a late result discarded (on the attempt's
own bar, so simultaneous reclaims stay apart), where a kill was requested or a worker was found
dead (in a strip at the top of the lane, above the bars), where an attempt outlived its first
lease, and the last heartbeat of an attempt still running. Built from the run's audit events and
its running steps' leases, so it tells the same story as the log. Drawn in two frames, wide and
phone-narrow; the template `_timeline.html` turns each into SVG and CSS shows the one that fits."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.model import Event, Run, StepStatus

AXIS_HEIGHT = 22.0
MARK_STRIP = 16.0  # the top of each lane, for worker-level marks (kill, lost)
BAR_HEIGHT = 14.0
BAR_PITCH = 18.0
LANE_PAD = 6.0
RIGHT_PAD = 10.0
TICK_CHAR = 6.2  # width of a tick label's character at 11 px, to keep labels inside the picture
TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True)
class Frame:
    """The picture's size: total width, the lane-label column, the narrowest bar, most ticks."""
    width: float
    label_width: float
    min_bar: float
    max_ticks: int


WIDE = Frame(820.0, 96.0, 6.0, 8)  # a laptop's card: drawn at 1:1 or larger
NARROW = Frame(330.0, 66.0, 5.0, 4)  # a 390 px phone's card: drawn at 1:1, never shrunk

# Which event ends an attempt, and as what.
ENDINGS = {"step_succeeded": "succeeded", "step_retry_scheduled": "failed", "step_dead_lettered": "dead",
           "step_reclaimed": "lost", "step_cancelled": "cancelled"}
STEP_MARKERS = {"step_reclaimed": "reclaimed", "step_result_discarded": "discarded"}
WORKER_MARKERS = {"worker_lost": "lost", "worker_kill_requested": "kill"}


@dataclass
class Span:
    step: str
    attempt: int
    worker: str
    start: datetime
    end: datetime | None = None
    outcome: str = StepStatus.RUNNING.value  # until the event that ends the attempt
    note: str = ""
    step_id: int = 0


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
    reach: float = 0.0  # half the height of a line marker (lost, lease)


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str  # "start", or "end" for a label that would otherwise cross the right edge


@dataclass
class TimelinePicture:
    lanes: list[tuple[str, float, float]] = field(default_factory=list)  # (worker, top, height)
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    width: float = WIDE.width
    height: float = AXIS_HEIGHT
    label_width: float = WIDE.label_width
    bar_height: float = BAR_HEIGHT
    narrow: bool = False


def attempt_spans(events: list[Event]) -> list[Span]:
    """One span per started attempt, closed by the event that ended it (if any yet). An attempt
    whose reclaim also dead-lettered the step ends as dead: that was the last straw."""
    spans: list[Span] = []
    open_spans: dict[tuple[int, int], Span] = {}
    closed: dict[tuple[int, int], Span] = {}
    for event in events:
        key = (event.step_id or 0, event.attempt or 0)
        if event.type == "step_started":
            open_spans[key] = Span(event.step or "?", event.attempt or 0, event.worker or "?", event.ts,
                                   step_id=event.step_id or 0)
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


def timeline_picture(run: Run, events: list[Event], worker_events: list[Event], now: datetime,
                     frame: Frame = WIDE, lease_seconds: float | None = None,
                     leases: dict[int, datetime] | None = None) -> TimelinePicture:
    """The picture of a run from its events and the lifecycle events of the workers that ran it;
    `now` ends the bars of attempts still running. With `lease_seconds`, attempts longer than a
    lease get a mark where it would have run out; `leases` (step id → lease expiry of a running
    step) places the running attempts' last heartbeats."""
    spans = attempt_spans(events)
    axis = _Axis.of(run, spans, now, frame)
    picture = TimelinePicture(ticks=_ticks(axis, frame), width=frame.width, label_width=frame.label_width,
                              narrow=frame is NARROW)
    # A short attempt is drawn wider than it lasted (min_bar): pack rows by the drawn width, so
    # that the next attempt on the worker does not cover it.
    rows = _pack_rows(spans, now, timedelta(seconds=(frame.min_bar + 1) / axis.scale))
    lanes = _lanes(spans, rows)
    picture.lanes = [(worker, top, height) for worker, (top, height) in lanes.items()]
    row_y = {}
    for span in spans:
        top, _ = lanes[span.worker]
        y = top + MARK_STRIP + rows[id(span)] * BAR_PITCH
        row_y[(span.step_id, span.attempt)] = y + BAR_HEIGHT / 2
        x = axis.x(span.start)
        width = max(frame.min_bar, axis.x(span.end or now) - x)
        picture.bars.append(Bar(x, y, width, span.outcome, span.step.split(".", 1)[-1], _bar_title(span, now)))
        picture.markers.extend(_lease_marks(span, axis, y + BAR_HEIGHT / 2, now, lease_seconds, leases))
    for event in events:
        where = row_y.get((event.step_id or 0, event.attempt or 0))
        if event.type in STEP_MARKERS and where is not None:
            picture.markers.append(Marker(axis.x(event.ts), where, STEP_MARKERS[event.type], _marker_title(event)))
    for event in worker_events:
        if event.type in WORKER_MARKERS and event.worker in lanes:
            top, height = lanes[event.worker]
            kind = WORKER_MARKERS[event.type]
            if kind == "kill":
                picture.markers.append(Marker(axis.x(event.ts), top + MARK_STRIP / 2 + 1, kind, _marker_title(event)))
            else:  # a line down the bars: from here on the worker's attempts are orphans
                bars_top = top + MARK_STRIP - 2
                reach = (top + height - bars_top) / 2
                picture.markers.append(Marker(axis.x(event.ts), bars_top + reach, kind, _marker_title(event), reach))
    picture.height = AXIS_HEIGHT + sum(height for _, height in lanes.values()) + 4
    return picture


def _lease_marks(span: Span, axis: _Axis, y: float, now: datetime, lease_seconds: float | None,
                 leases: dict[int, datetime] | None) -> list[Marker]:
    marks = []
    end = span.end or now
    if lease_seconds and (end - span.start).total_seconds() > lease_seconds:
        first_lease_end = span.start + timedelta(seconds=lease_seconds)
        marks.append(Marker(axis.x(first_lease_end), y, "lease", f"{span.step} attempt {span.attempt}: its first "
                            f"lease ({lease_seconds:g} s) ran out here, but heartbeats had renewed it, so the "
                            "step was not reclaimed", BAR_HEIGHT / 2 + 3))
    if lease_seconds and span.end is None and leases and span.step_id in leases:
        beat = leases[span.step_id] - timedelta(seconds=lease_seconds)
        if span.start < beat <= now:
            marks.append(Marker(axis.x(beat), y, "heartbeat", f"last heartbeat of {span.step}: lease renewed "
                                f"until {leases[span.step_id].astimezone():%H:%M:%S}"))
    return marks


@dataclass(frozen=True)
class _Axis:
    start: datetime
    seconds: float
    scale: float  # SVG units per second
    label_width: float

    @classmethod
    def of(cls, run: Run, spans: list[Span], now: datetime, frame: Frame) -> _Axis:
        """From the run's creation to its end (or now), wide enough for every attempt."""
        start = run.created_at
        end = run.finished_at or now
        end = max([end, *(s.end or now for s in spans)])
        seconds = max((end - start).total_seconds(), 1.0)
        return cls(start, seconds, (frame.width - frame.label_width - RIGHT_PAD) / seconds, frame.label_width)

    def x(self, moment: datetime) -> float:
        return self.label_width + max(0.0, (moment - self.start).total_seconds()) * self.scale


def _lanes(spans: list[Span], rows: dict[int, int]) -> dict[str, tuple[float, float]]:
    """(top, height) of each worker's lane, in order of first attempt, tall enough for its rows."""
    lanes: dict[str, tuple[float, float]] = {}
    top = AXIS_HEIGHT
    for worker in dict.fromkeys(s.worker for s in spans):
        count = 1 + max(rows[id(s)] for s in spans if s.worker == worker)
        height = MARK_STRIP + LANE_PAD + count * BAR_PITCH - (BAR_PITCH - BAR_HEIGHT)
        lanes[worker] = (top, height)
        top += height
    return lanes


def _pack_rows(spans: list[Span], now: datetime, min_drawn: timedelta = timedelta(0)) -> dict[int, int]:
    """Row inside its lane for each span: the first row free at its start (interval partitioning),
    a span occupying at least `min_drawn`."""
    rows: dict[int, int] = {}
    ends: dict[str, list[datetime]] = {}
    for span in sorted(spans, key=lambda s: s.start):
        lane = ends.setdefault(span.worker, [])
        row = next((i for i, busy_until in enumerate(lane) if busy_until <= span.start), len(lane))
        busy_until = max(span.end or now, span.start + min_drawn)
        if row == len(lane):
            lane.append(busy_until)
        else:
            lane[row] = busy_until
        rows[id(span)] = row
    return rows


def _ticks(axis: _Axis, frame: Frame) -> list[Tick]:
    step = next((s for s in TICK_STEPS if axis.seconds / s <= frame.max_ticks), TICK_STEPS[-1])
    ticks = []
    value = 0.0
    while value <= axis.seconds + 1e-9:
        x, label = frame.label_width + value * axis.scale, _duration(value)
        fits = x + 3 + len(label) * TICK_CHAR <= frame.width
        ticks.append(Tick(x, label, "start" if fits else "end"))
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
    what = {"step_reclaimed": f"{event.step} attempt {event.attempt} reclaimed from {event.worker} "
                              f"({detail.get('reason', '')})",
            "step_result_discarded": f"late result of {event.step} attempt {event.attempt} discarded",
            "worker_lost": f"{event.worker} lost (process gone)",
            "worker_kill_requested": f"kill requested for {event.worker} (pid {detail.get('pid')}, "
                                     f"via {detail.get('via')})"}
    return what.get(event.type, event.type)
