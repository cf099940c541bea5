"""Durable timers: `delaySeconds` schedules a step (run_at) instead of sleeping in a slot, so
delayed steps hold no slot while other runs complete, and none starts before its time."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from engine import store
from engine.submit import submit_run
from engine.verify import verify_all
from tests.chaos.support import run_events
from tests.helpers import chain, make_run, step, wait_for

DELAY_SECONDS = 4.0  # the 30 s, shortened to keep the suite fast; nothing depends on its size


def test_hundred_delayed_steps_hold_no_slot_and_start_no_earlier_than_their_time(conn, settings, spawn):
    settings = dataclasses.replace(settings, max_steps_per_run=100)
    delayed = [dict(step(f"tool_call.later{i}", tool="fetch_data", count=1), delaySeconds=DELAY_SECONDS)
               for i in range(100)]
    delayed_run, _ = submit_run(conn, make_run(*delayed, goal="hundred timers"), settings)
    worker = spawn("w1", concurrency=2)
    # Another run completes meanwhile, on a worker with only two slots: no delayed step holds one.
    other, _ = submit_run(conn, chain(5), settings)
    wait_for(lambda: store.run_get(conn, other).status == "completed", 30, "the other run to complete")
    wait_for(lambda: store.run_get(conn, delayed_run).status == "completed", 60, "the timers to fire", interval=0.1)
    run = store.run_get(conn, delayed_run)
    run_at = {s.id: s.run_at for s in run.steps}
    started = run_events(conn, delayed_run, "step_started")
    assert len(started) == 100
    # The other run, submitted after the hundred delayed steps, got the two slots first: a step
    # that sleeps in a slot would have taken both at once.
    other_started = run_events(conn, other, "step_started")
    assert other_started[0].ts < min(e.ts for e in started)
    # The timer was set by the submit (the same transaction clock as the run's creation), and no
    # step started before it, by the database's clock. (Audit rows are timed when written, a little
    # after their transaction's clock, so the timer is compared with `run_at`, not `step_ready`.)
    assert set(run_at.values()) == {run.created_at + timedelta(seconds=DELAY_SECONDS)}
    assert all(e.ts >= run_at[e.step_id] for e in started)
    lateness = sorted((e.ts - run_at[e.step_id]).total_seconds() for e in started)
    print(f"timer lateness: median {lateness[50]:.3f}s, max {lateness[-1]:.3f}s (100 steps, 2 slots)")
    assert worker.alive()
    assert verify_all(conn) == {}


def test_delayed_child_is_scheduled_when_its_parent_succeeds(conn, settings, spawn):
    body = make_run(step("tool_call.first", tool="fetch_data"),
                    dict(step("tool_call.later", ["tool_call.first"], tool="transform"), delaySeconds=1.5))
    run_id, _ = submit_run(conn, body, settings)
    spawn("w1")
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "the run to complete")
    ready = next(e for e in run_events(conn, run_id, "step_ready") if e.step == "tool_call.later")
    started = next(e for e in run_events(conn, run_id, "step_started") if e.step == "tool_call.later")
    steps = {s.name: s for s in store.run_get(conn, run_id).steps}
    assert ready.detail == {"delaySeconds": 1.5}
    # Scheduled by the transaction that recorded the parent's success, and not started before.
    assert steps["tool_call.later"].run_at == steps["tool_call.first"].finished_at + timedelta(seconds=1.5)
    assert started.ts >= steps["tool_call.later"].run_at
    assert verify_all(conn) == {}


def test_a_map_steps_delay_applies_to_each_child_not_to_the_collection(conn, settings, spawn):
    fetch = dict(step("tool_call.fetch", tool="fetch_data", count=1), map="tool_call.plan", delaySeconds=1.0)
    run_id, _ = submit_run(conn, make_run(step("tool_call.plan", tool="plan", count=2), fetch), settings)
    spawn("w1")
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "the run to complete")
    ready = {e.step: e for e in run_events(conn, run_id, "step_ready")}
    started = {e.step: e for e in run_events(conn, run_id, "step_started")}
    steps = {s.name: s for s in store.run_get(conn, run_id).steps}
    for child in ("tool_call.fetch[0]", "tool_call.fetch[1]"):
        assert steps[child].run_at == steps["tool_call.plan"].finished_at + timedelta(seconds=1.0)
        assert started[child].ts >= steps[child].run_at
        assert ready[child].detail == {"delaySeconds": 1.0}
    assert ready["tool_call.fetch"].detail is None  # the collection is not delayed again
    assert verify_all(conn) == {}
