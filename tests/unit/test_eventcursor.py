"""`EventCursor` (used by `engine watch`): a row that commits late, below an id already returned,
is still returned; nothing is returned twice; the re-read floor only moves past settled ids."""
from __future__ import annotations

from dataclasses import dataclass

from engine.eventcursor import EventCursor


@dataclass(frozen=True)
class Row:
    id: int


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_late_committing_lower_id_is_returned_once_and_nothing_twice():
    clock = Clock()
    cursor = EventCursor(after=0, settle_seconds=2, clock=clock)
    assert [r.id for r in cursor.accept([Row(1), Row(3)])] == [1, 3]  # 2 still committing
    clock.now = 1
    assert [r.id for r in cursor.accept([Row(1), Row(2), Row(3), Row(4)])] == [2, 4]
    assert cursor.floor == 0  # nothing settled yet: id 2's neighbours are still re-read
    clock.now = 2.5
    assert cursor.accept([Row(1), Row(2), Row(3), Row(4)]) == []
    assert cursor.floor == 3  # 1 and 3 were seen 2.5 s ago; 2 and 4 only 1.5 s ago
    clock.now = 3.5
    assert cursor.accept([Row(4), Row(5)]) == [Row(5)]
    assert cursor.floor == 4


def test_rows_at_or_below_the_starting_point_are_skipped():
    cursor = EventCursor(after=10, settle_seconds=2, clock=Clock())
    assert cursor.accept([Row(9), Row(10), Row(11)]) == [Row(11)]
