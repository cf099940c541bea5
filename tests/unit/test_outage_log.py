"""The worker's outage log: one warning when the database goes away and one line when every
connection is back, instead of a line per connection per reconnect attempt (issue 17)."""
from __future__ import annotations

import logging

import pytest

from worker.connections import SAME_OUTAGE_SECONDS, STILL_DOWN_LOG_SECONDS, OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def test_a_restart_felt_by_five_connections_logs_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="worker")
    clock = Clock()
    outage = OutageLog(clock)
    names = ["w:liveness", "w:claim", "w:record", "w:reaper", "w:tools"]
    for name in names:
        outage.lost(name, "server closed the connection unexpectedly")
    for _attempt in range(6):
        clock.now += 0.1
        for name in names:
            outage.failed(name, "connection refused")
    for name in names:
        outage.back(name)
    assert messages(caplog) == [
        "database connection lost (w:liveness: server closed the connection unexpectedly); reconnecting",
        "database back after 0.60s: 5 connection(s) reconnected after 30 failed attempt(s)"]


def test_an_idle_connection_noticing_the_same_restart_later_is_not_a_new_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    clock = Clock()
    outage = OutageLog(clock)
    outage.lost("w:liveness", "gone")
    outage.back("w:liveness")
    clock.now += SAME_OUTAGE_SECONDS / 2
    outage.lost("w:claim", "gone")
    outage.back("w:claim")
    clock.now += SAME_OUTAGE_SECONDS * 2
    outage.lost("w:claim", "gone again")
    assert messages(caplog) == ["database connection lost (w:liveness: gone); reconnecting",
                                "database back after 0.00s: 1 connection(s) reconnected after 0 failed attempt(s)",
                                "database connection lost (w:claim: gone again); reconnecting"]


def test_a_long_outage_is_reminded_of_with_what_is_still_waiting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    clock = Clock()
    outage = OutageLog(clock)
    outage.failed("w:liveness", "refused")
    clock.now += STILL_DOWN_LOG_SECONDS
    outage.failed("w:liveness", "refused")
    assert messages(caplog)[-1] == ("database still unavailable after 30s (2 failed attempt(s), waiting: w:liveness; "
                                    "last: refused)")
