"""The invariant checker: replays a run's audit log and compares it with the stored state.

Used by the tests after every chaos scenario and by `python -m engine verify [RUN_ID]`. It reports
problems as sentences; an empty list means every invariant holds:
- replaying the events reproduces each step's final status and attempt, and the run's status;
- no step has more than one recorded success, and attempts only grow;
- no step started before all of its parents had succeeded;
- a terminal run is consistent with its steps (a run failed for its budget has no dead letter:
  its unfinished steps were cancelled);
- no step started after its run's `budget_exceeded` event.

Events that change no state (`limit_paused`, `budget_exceeded`, ...) are accepted and replayed as
no-ops; `run_failed` with reason `budget_exceeded` is a run transition like any other.
- time order agrees with id order for dependent events: a step's transitions are timed in the
  order they were written, and no step's start is timed before its parents' successes;
- a terminal run is consistent with its steps.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from engine import store
from engine.model import ACTIVE_STEP_STATUSES, Event, Run, RunStatus, Step, StepStatus

STEP_TRANSITIONS: dict[str, StepStatus] = {
    "step_ready": StepStatus.READY, "step_started": StepStatus.RUNNING, "step_succeeded": StepStatus.SUCCEEDED,
    "step_retry_scheduled": StepStatus.READY, "step_dead_lettered": StepStatus.DEAD_LETTER,
    "step_reclaimed": StepStatus.READY, "step_cancelled": StepStatus.CANCELLED, "step_redriven": StepStatus.READY,
}
RUN_TRANSITIONS: dict[str, RunStatus] = {
    "run_created": RunStatus.RUNNING, "run_completed": RunStatus.COMPLETED, "run_failed": RunStatus.FAILED,
    "run_cancelled": RunStatus.CANCELLED}


@dataclass
class Replay:
    run_status: RunStatus | None = None
    status: dict[int, StepStatus] = field(default_factory=dict)
    attempt: dict[int, int] = field(default_factory=dict)
    successes: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def replay(events: Sequence[Event], parents: Mapping[int, Sequence[int]]) -> Replay:
    """Fold events (in id order) into step and run states, checking ordering rules."""
    state = Replay()
    for event in events:
        kind, step_id = event.type, event.step_id
        if kind in RUN_TRANSITIONS:
            state.run_status = RUN_TRANSITIONS[kind]
        if kind == "step_redriven" and (event.detail or {}).get("runReopened"):
            state.run_status = RunStatus.RUNNING
        if step_id is None or kind not in STEP_TRANSITIONS:
            continue
        if kind == "step_started":
            _check_start(state, event, step_id, parents.get(step_id, []))
        if kind == "step_succeeded":
            state.successes[step_id] = state.successes.get(step_id, 0) + 1
            if state.successes[step_id] > 1:
                state.problems.append(f"step {event.step} ({step_id}) has {state.successes[step_id]} recorded successes")
        state.status[step_id] = STEP_TRANSITIONS[kind]
    return state


def _check_start(state: Replay, event: Event, step_id: int, parent_ids: Sequence[int]) -> None:
    attempt = event.attempt or 0
    if attempt <= state.attempt.get(step_id, 0):
        state.problems.append(f"step {event.step} ({step_id}) started attempt {attempt} after attempt "
                              f"{state.attempt[step_id]}: attempts must only grow")
    state.attempt[step_id] = max(attempt, state.attempt.get(step_id, 0))
    unfinished = [p for p in parent_ids if state.status.get(p) != StepStatus.SUCCEEDED]
    if unfinished:
        state.problems.append(f"step {event.step} ({step_id}) started (event {event.id}) before its "
                              f"parent(s) {unfinished} succeeded")


def check_time_order(events: Sequence[Event], parents: Mapping[int, Sequence[int]]) -> list[str]:
    """Problems where an event's time disagrees with its id for events that depend on each other.

    Only dependent events are compared: two transitions of one step are serialised by the step's
    row lock (the second is written after the first committed), and a child is claimed only after
    its parents' successes committed. Independent events of concurrent transactions may be timed a
    few microseconds out of id order, because ids and times are drawn separately; those are not
    compared."""
    problems: list[str] = []
    last: dict[int, tuple[datetime, int]] = {}
    succeeded_at: dict[int, datetime] = {}
    for event in events:
        kind, step_id = event.type, event.step_id
        if step_id is None or kind not in STEP_TRANSITIONS:
            continue
        when = event.ts
        if step_id in last and when < last[step_id][0]:
            problems.append(f"step {event.step} ({step_id}): event {event.id} ({kind}) is timed "
                            f"{_ms(last[step_id][0] - when)} before the step's earlier event {last[step_id][1]}")
        last[step_id] = (when, event.id)
        if kind == "step_succeeded":
            succeeded_at[step_id] = when
        if kind == "step_started":
            early = [p for p in parents.get(step_id, []) if p in succeeded_at and when < succeeded_at[p]]
            if early:
                problems.append(f"step {event.step} ({step_id}) started (event {event.id}) at a time before "
                                f"its parent(s) {early} succeeded")
    return problems


def _ms(delta: timedelta) -> str:
    return f"{delta.total_seconds() * 1000:.3f} ms"


def check_run(run: Run, events: Sequence[Event]) -> list[str]:
    """Every invariant of one run, from its stored state and its events in id order."""
    ids = {s.name: s.id for s in run.steps}
    parents = {s.id: [ids[p] for p in s.depends_on] for s in run.steps}
    state = replay(events, parents)
    problems = list(state.problems) + check_time_order(events, parents)
    for step in run.steps:
        problems.extend(_step_matches_replay(step, state))
    if state.run_status != run.status:
        problems.append(f"run is {run.status} but its events replay to {state.run_status}")
    stopped_for_budget = next((e.id for e in events if e.type == "budget_exceeded"), None)
    if stopped_for_budget is not None:
        late = [e.step for e in events if e.type == "step_started" and e.id > stopped_for_budget]
        if late:
            problems.append(f"step(s) {late} started after the run's budget was exceeded")
    problems.extend(_run_consistency(run, budget_failed=stopped_for_budget is not None))
    return problems


def _step_matches_replay(step: Step, state: Replay) -> list[str]:
    problems = []
    replayed = state.status.get(step.id, StepStatus.PENDING)
    if replayed != step.status:
        problems.append(f"step {step.name} ({step.id}) is {step.status} but its events replay to {replayed}")
    if state.attempt.get(step.id, 0) != step.attempt:
        problems.append(f"step {step.name} ({step.id}) is at attempt {step.attempt} but its events "
                        f"replay to attempt {state.attempt.get(step.id, 0)}")
    if step.status == StepStatus.SUCCEEDED and step.output is None:
        problems.append(f"step {step.name} ({step.id}) succeeded without an output")
    return problems


def _run_consistency(run: Run, budget_failed: bool = False) -> list[str]:
    statuses = [s.status for s in run.steps]
    active = sum(s in ACTIVE_STEP_STATUSES for s in statuses)
    dead = statuses.count(StepStatus.DEAD_LETTER)
    all_ok = all(s == StepStatus.SUCCEEDED for s in statuses)
    seen = sorted({str(s) for s in statuses})
    status = run.status
    if status == RunStatus.COMPLETED and not all_ok:
        return [f"run is completed but its steps are {seen}"]
    if status == RunStatus.FAILED and budget_failed and not active:
        return []
    if status == RunStatus.FAILED and (dead == 0 or active):
        return [f"run is failed with {dead} dead-lettered and {active} ready/running step(s)"]
    if status == RunStatus.CANCELLED and active:
        return [f"run is cancelled but {active} step(s) are still ready/running"]
    if status == RunStatus.RUNNING and (all_ok or (active == 0 and dead > 0)):
        return [f"run is still running although its steps are {seen}"]
    return []


def verify_run(conn: psycopg.Connection, run_id: str) -> list[str]:
    run = store.run_get(conn, run_id)
    return check_run(run, store.events_after(conn, run_id, 0, limit=1_000_000))


def verify_all(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Problems per run id, for every run that has any."""
    problems = {}
    for run_id in store.run_ids(conn):
        found = verify_run(conn, run_id)
        if found:
            problems[run_id] = found
    return problems
