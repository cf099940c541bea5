"""The wire format (`engine.wire`) without a database: model records become exactly the JSON shapes
the README documents, with ISO dates, ids as strings and states as plain strings."""
from __future__ import annotations

import json
from datetime import timedelta, timezone

from engine.model import RunStatus, StepStatus, WorkerInfo, WorkerStatus
from engine.wire import event_to_api, run_to_api, step_to_api, worker_to_api
from tests.records import RUN_ID, T0, event_record, run_record, step_record

API_STEP_KEYS = ["id", "name", "status", "attempt", "maxAttempts", "dependsOn", "output", "error"]
API_EVENT_KEYS = ["id", "type", "runId", "stepId", "step", "attempt", "worker", "ts", "detail"]


def two_steps() -> tuple:
    first = step_record(1, "tool_call.fetch", StepStatus.SUCCEEDED, 1, output={"items": [1, 2]}, reclaims=2,
                        worker=None, started_at=T0, finished_at=T0 + timedelta(seconds=1))
    second = step_record(2, "llm_call.sum", StepStatus.DEAD_LETTER, 3, ["tool_call.fetch"], error="boom",
                         max_attempts=3, attempt_limit=3)
    return first, second


def test_a_run_has_the_documented_keys_and_nothing_internal():
    body = run_to_api(run_record(*two_steps(), status=RunStatus.FAILED, idempotency_key="k"))
    assert list(body) == ["id", "goal", "status", "steps"]
    assert body["id"] == str(RUN_ID) and body["status"] == "failed"
    assert [list(s) for s in body["steps"]] == [API_STEP_KEYS, API_STEP_KEYS]
    assert body["steps"][1] == {"id": 2, "name": "llm_call.sum", "status": "dead_letter", "attempt": 3,
                                "maxAttempts": 3, "dependsOn": ["tool_call.fetch"], "output": None, "error": "boom"}


def test_states_become_plain_strings_not_enum_members():
    body = run_to_api(run_record(*two_steps(), status=RunStatus.FAILED))
    assert type(body["status"]) is str and type(body["steps"][0]["status"]) is str
    assert json.loads(json.dumps(body)) == body  # plain JSON all the way down: no default= needed


def test_a_step_keeps_its_output_and_lists_its_parents():
    first, _ = two_steps()
    assert step_to_api(first)["output"] == {"items": [1, 2]}
    assert step_to_api(first)["dependsOn"] == []


def test_an_event_has_the_documented_keys_an_iso_timestamp_and_a_string_run_id():
    event = event_record(7, "step_retry_scheduled", 3, 2, {"error": "x", "delaySeconds": 0.5}, at=1.25, worker="w1")
    body = event_to_api(event)
    assert list(body) == API_EVENT_KEYS
    assert body == {"id": 7, "type": "step_retry_scheduled", "runId": str(RUN_ID), "stepId": 3,
                    "step": "tool_call.s3", "attempt": 2, "worker": "w1", "ts": "2026-01-01T00:00:01.250000+00:00",
                    "detail": {"error": "x", "delaySeconds": 0.5}}


def test_a_worker_event_has_no_run_and_keeps_its_time_zone():
    event = event_record(1, "worker_lost", run_id=None, worker="w2")
    moved = event.__class__(**{**vars(event), "ts": event.ts.astimezone(timezone(timedelta(hours=2)))})
    body = event_to_api(moved)
    assert body["runId"] is None and body["stepId"] is None and body["step"] is None
    assert body["ts"].endswith("+02:00")


def test_a_worker_has_the_documented_keys():
    worker = WorkerInfo(id=9, name="worker-1", pid=4242, host="box", status=WorkerStatus.LOST, started_at=T0,
                        last_seen=T0 + timedelta(seconds=3), seen_seconds_ago=1.5, running=(5, 8))
    body = worker_to_api(worker)
    assert body == {"name": "worker-1", "pid": 4242, "host": "box", "status": "lost",
                    "lastSeen": "2026-01-01T00:00:03+00:00", "running": [5, 8]}
    assert type(body["status"]) is str
