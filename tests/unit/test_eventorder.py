"""In-order delivery over audit ids that commit out of order (no database): the one tracker behind
the web app's live stream and `engine watch`."""
from __future__ import annotations

from dataclasses import dataclass

from engine.eventorder import GapTracker
from tests.helpers import FakeClock


@dataclass
class Row:
    id: int


def Clock() -> FakeClock:  # noqa: N802 - reads as the class it returns
    return FakeClock(100.0)


def ids(rows: list[Row]) -> list[int]:
    return [r.id for r in rows]


def test_contiguous_rows_are_delivered_at_once_and_move_the_horizon():
    tracker = GapTracker(10, gap_seconds=2, clock=Clock())
    assert ids(tracker.accept([Row(11), Row(12), Row(13)])) == [11, 12, 13]
    assert tracker.horizon == 13 and not tracker.waiting


def test_rows_after_a_missing_id_wait_until_it_commits_then_come_in_order():
    tracker = GapTracker(10, gap_seconds=2, clock=Clock())
    assert ids(tracker.accept([Row(11), Row(13), Row(14)])) == [11]
    assert tracker.horizon == 11 and tracker.waiting
    assert ids(tracker.accept([Row(12), Row(13), Row(14)])) == [12, 13, 14]
    assert tracker.horizon == 14 and not tracker.waiting


def test_an_id_that_never_commits_is_given_up_after_the_gap_time():
    clock = Clock()
    tracker = GapTracker(0, gap_seconds=2, clock=clock)
    assert ids(tracker.accept([Row(2)])) == []
    clock.now += 1.9
    assert ids(tracker.accept([Row(2)])) == []
    clock.now += 0.1
    assert ids(tracker.accept([Row(2), Row(3)])) == [2, 3]
    assert not tracker.waiting


def test_each_gap_is_timed_from_when_it_was_first_seen():
    clock = Clock()
    tracker = GapTracker(0, gap_seconds=2, clock=clock)
    tracker.accept([Row(2), Row(4)])          # 1 and 3 missing since t=0
    clock.now += 1
    tracker.accept([Row(1), Row(2), Row(4)])  # 1 arrives: 2 is delivered, 3 still missing
    assert tracker.horizon == 2
    clock.now += 1                            # 3 has been missing for 2 s, not 1
    assert ids(tracker.accept([Row(4)])) == [4]


def test_rows_at_or_below_the_horizon_are_never_delivered_twice():
    tracker = GapTracker(5, gap_seconds=2, clock=Clock())
    assert ids(tracker.accept([Row(4), Row(5), Row(6)])) == [6]


def test_ids_missing_at_start_are_held_like_any_gap():
    clock = Clock()
    tracker = GapTracker(7, gap_seconds=2, clock=clock)
    tracker.mark_missing([8])
    assert ids(tracker.accept([Row(9)])) == []
    clock.now += 2
    assert ids(tracker.accept([Row(9)])) == [9]


def test_a_late_committing_lower_id_is_delivered_once_in_order_and_nothing_twice():
    clock = Clock()
    tracker = GapTracker(0, gap_seconds=2, clock=clock)
    assert ids(tracker.accept([Row(1), Row(3)])) == [1]       # 2 still committing: 3 waits
    clock.advance(1)
    assert ids(tracker.accept([Row(2), Row(3), Row(4)])) == [2, 3, 4]
    assert ids(tracker.accept([Row(3), Row(4)])) == []        # re-read rows are not delivered again
    assert tracker.horizon == 4 and not tracker.waiting
