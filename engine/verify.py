"""The invariant checker: replays a run's audit log and compares it with the stored state.

Used by the tests after every chaos scenario and by `python -m engine verify [RUN_ID]`. It reports
problems as sentences; an empty list means every invariant holds:
- replaying the events reproduces each step's final status and attempt, and the run's status;
- no step has more than one recorded success, and attempts only grow;
- no step started before all of its parents had succeeded;
- a terminal run is consistent with its steps (a run failed by its deadline may have no dead letter).

Agent primitives replay too: `step_waiting`, a wait's `step_signalled`/`step_timed_out` (their
`detail.status` is the outcome), a re-run's `step_reused`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from engine import store

STEP_TRANSITIONS = {
    "step_ready": "ready", "step_started": "running", "step_succeeded": "succeeded",
    "step_retry_scheduled": "ready", "step_dead_lettered": "dead_letter", "step_reclaimed": "ready",
    "step_cancelled": "cancelled", "step_redriven": "ready",
    # agent primitives (migration 0006)
    "step_waiting": "waiting", "step_reused": "succeeded",
}
# Transitions whose outcome the event's detail names (`detail.status`): a signal accepts or rejects
# a wait, a timeout fails it or lets it continue.
STEP_OUTCOME_EVENTS = {"step_signalled", "step_timed_out"}
RUN_TRANSITIONS = {"run_created": "running", "run_completed": "completed", "run_failed": "failed",
                   "run_cancelled": "cancelled"}


@dataclass
class Replay:
    run_status: str | None = None
    status: dict[int, str] = field(default_factory=dict)
    attempt: dict[int, int] = field(default_factory=dict)
    successes: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def replay(events: list[dict[str, Any]], parents: dict[int, list[int]]) -> Replay:
    """Fold events (API shape, in id order) into step and run states, checking ordering rules."""
    state = Replay()
    for event in events:
        kind, step_id = event["type"], event["stepId"]
        if kind in RUN_TRANSITIONS:
            state.run_status = RUN_TRANSITIONS[kind]
        if kind == "step_redriven" and (event.get("detail") or {}).get("runReopened"):
            state.run_status = "running"
        if kind in STEP_OUTCOME_EVENTS:
            new_status = (event.get("detail") or {}).get("status")
        else:
            new_status = STEP_TRANSITIONS.get(kind)
        if step_id is None or new_status is None:
            continue
        if kind == "step_started":
            _check_start(state, event, parents.get(step_id, []))
        if new_status == "succeeded":
            state.successes[step_id] = state.successes.get(step_id, 0) + 1
            if state.successes[step_id] > 1:
                state.problems.append(f"step {event['step']} ({step_id}) has {state.successes[step_id]} recorded successes")
        state.status[step_id] = new_status
    return state


def _check_start(state: Replay, event: dict[str, Any], parent_ids: list[int]) -> None:
    step_id, attempt = event["stepId"], event["attempt"] or 0
    if attempt <= state.attempt.get(step_id, 0):
        state.problems.append(f"step {event['step']} ({step_id}) started attempt {attempt} after attempt "
                              f"{state.attempt[step_id]}: attempts must only grow")
    state.attempt[step_id] = max(attempt, state.attempt.get(step_id, 0))
    unfinished = [p for p in parent_ids if state.status.get(p) != "succeeded"]
    if unfinished:
        state.problems.append(f"step {event['step']} ({step_id}) started (event {event['id']}) before its "
                              f"parent(s) {unfinished} succeeded")


def check_run(run: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """Every invariant of one run (`run` in the shape of `store.run_get`, `events` in API shape)."""
    ids = {s["name"]: s["id"] for s in run["steps"]}
    parents = {s["id"]: [ids[p] for p in s["dependsOn"]] for s in run["steps"]}
    state = replay(events, parents)
    problems = list(state.problems)
    for step in run["steps"]:
        replayed = state.status.get(step["id"], "pending")
        if replayed != step["status"]:
            problems.append(f"step {step['name']} ({step['id']}) is {step['status']} but its events replay to {replayed}")
        if state.attempt.get(step["id"], 0) != step["attempt"]:
            problems.append(f"step {step['name']} ({step['id']}) is at attempt {step['attempt']} but its events "
                            f"replay to attempt {state.attempt.get(step['id'], 0)}")
        if step["status"] == "succeeded" and step["output"] is None:
            problems.append(f"step {step['name']} ({step['id']}) succeeded without an output")
    if state.run_status != run["status"]:
        problems.append(f"run is {run['status']} but its events replay to {state.run_status}")
    deadline = any(e["type"] == "run_deadline_exceeded" for e in events)
    problems.extend(_run_consistency(run, deadline))
    return problems


def _run_consistency(run: dict[str, Any], deadline_exceeded: bool = False) -> list[str]:
    statuses = [s["status"] for s in run["steps"]]
    active = sum(s in ("ready", "running", "waiting") for s in statuses)
    dead = statuses.count("dead_letter")
    all_ok = all(s == "succeeded" for s in statuses)
    status = run["status"]
    if status == "completed" and not all_ok:
        return [f"run is completed but its steps are {sorted(set(statuses))}"]
    if status == "failed" and ((dead == 0 and not deadline_exceeded) or active):
        return [f"run is failed with {dead} dead-lettered and {active} ready/running step(s)"]
    if status == "cancelled" and active:
        return [f"run is cancelled but {active} step(s) are still ready/running"]
    if status == "running" and (all_ok or (active == 0 and dead > 0)):
        return [f"run is still running although its steps are {sorted(set(statuses))}"]
    return []


def verify_run(conn: psycopg.Connection, run_id: str) -> list[str]:
    run = store.run_get(conn, run_id)
    events = [e.to_api() for e in store.events_after(conn, run_id, 0, limit=1_000_000)]
    return check_run(run, events)


def verify_all(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Problems per run id, for every run that has any."""
    problems = {}
    for run_id in store.run_ids(conn):
        found = verify_run(conn, run_id)
        if found:
            problems[run_id] = found
    return problems
