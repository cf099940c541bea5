"""The wake-up after a record (engine/store/notify.py): other workers hear `steps_ready` exactly when
the record made steps ready that its own claim left behind — never for steps it claimed itself —
including the children of a map the record expanded. The events channel is told every time."""
from __future__ import annotations

import json
import time

import psycopg

from engine import store
from engine.store import EVENTS_CHANNEL, STEPS_READY_CHANNEL, ClaimedStep, StepResult
from engine.submit import submit_run
from tests.helpers import make_run, step


def success(claimed: ClaimedStep, output: dict | None = None) -> StepResult:
    return StepResult(claimed.id, claimed.attempt, True, json.dumps(output or {}), run_id=claimed.run_id,
                      feeds_map=claimed.feeds_map)


def record(db_url: str, results: list[StepResult], limit: int) -> list[ClaimedStep]:
    """A worker's record transaction (its own connection: the wake-up rides behind its COMMIT)."""
    with store.connect(db_url) as recorder:
        store.step_record_session(recorder)
        _, claimed = store.step_record_and_claim(recorder, "w", 0, results, limit, 30, announce=True)
    return claimed


def channels_heard(listener: psycopg.Connection) -> set[str]:
    """The channels of the record's wake-up: both NOTIFYs of one statement arrive together, so once
    the events channel's has come (within a deadline), a ready one would be there too. (Each
    `notifies` call runs to its timeout: leaving its loop early drops notifications it had read.)"""
    heard: set[str] = set()
    deadline = time.monotonic() + 10
    while EVENTS_CHANNEL not in heard and time.monotonic() < deadline:
        heard |= {n.channel for n in listener.notifies(timeout=0.3)}
    return heard


def test_other_workers_hear_of_ready_steps_only_when_the_claim_left_some(conn, db_url, settings):
    body = make_run(step("tool_call.root", tool="fetch_data"),
                    *[step(f"tool_call.c{i}", ["tool_call.root"], tool="fetch_data") for i in range(3)])
    submit_run(conn, body, settings)
    [root] = store.step_claim(conn, "w", 0, 1, 30)
    with store.connect(db_url) as listener:
        store.listen(listener, EVENTS_CHANNEL, STEPS_READY_CHANNEL)
        first = record(db_url, [success(root)], limit=1)  # three children ready, one claimed
        assert len(first) == 1
        assert channels_heard(listener) == {EVENTS_CHANNEL, STEPS_READY_CHANNEL}
        rest = record(db_url, [success(first[0])], limit=5)  # claims the two left: nothing for others
        assert len(rest) == 2
        assert channels_heard(listener) == {EVENTS_CHANNEL}
        record(db_url, [success(s) for s in rest], limit=0)  # made nothing ready
        assert channels_heard(listener) == {EVENTS_CHANNEL}


def test_children_of_a_map_the_record_expanded_wake_other_workers(conn, db_url, settings):
    each = step("tool_call.each", tool="fetch_data")
    each["map"] = "tool_call.plan"
    submit_run(conn, make_run(step("tool_call.plan", tool="plan"), each), settings)
    [plan] = store.step_claim(conn, "w", 0, 1, 30)
    assert plan.feeds_map
    with store.connect(db_url) as listener:
        store.listen(listener, EVENTS_CHANNEL, STEPS_READY_CHANNEL)
        record(db_url, [success(plan, {"items": ["a", "b"]})], limit=0)
        assert channels_heard(listener) == {EVENTS_CHANNEL, STEPS_READY_CHANNEL}
