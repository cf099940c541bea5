"""Submitting runs: validation with clear messages and nothing stored, idempotency under races."""
from __future__ import annotations

import threading

import psycopg
import pytest

from engine import store
from engine.errors import Conflict, InvalidRun, TooLarge
from engine.submit import submit_run
from tests.helpers import make_run, step

OK = step("tool_call.a", tool="fetch_data")


def table_counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]
            for t in ("runs", "steps", "step_deps", "audit_log")}


INVALID = [
    ("not an object", ["a list"], "must be a JSON object"),
    ("no goal", {"steps": [OK]}, "goal must be a non-empty string"),
    ("no steps", make_run(), "steps must be a non-empty list"),
    ("duplicate names", make_run(OK, OK), "duplicate step name 'tool_call.a'"),
    ("missing dependency", make_run(step("tool_call.b", ["tool_call.zzz"], tool="fetch_data")),
     "depends on unknown step 'tool_call.zzz'"),
    ("self dependency", make_run(step("tool_call.b", ["tool_call.b"], tool="fetch_data")), "depends on itself"),
    ("cycle", make_run(step("tool_call.a", ["tool_call.c"], tool="fetch_data"),
                       step("tool_call.b", ["tool_call.a"], tool="fetch_data"),
                       step("tool_call.c", ["tool_call.b"], tool="fetch_data")),
     "dependency cycle: tool_call.a -> tool_call.b -> tool_call.c -> tool_call.a"),
    ("unknown kind", make_run(step("shell_call.rm", tool="fetch_data")), "unknown step kind 'shell_call'"),
    ("unknown tool", make_run(step("tool_call.x", tool="launch_missiles")), "unknown tool 'launch_missiles'"),
    ("bad name", make_run(step("fetch", tool="fetch_data")), "name must look like 'kind.label'"),
    ("non-object input", make_run({"name": "tool_call.a", "input": [1, 2]}), "input must be a JSON object"),
    ("bad maxAttempts", make_run({**OK, "maxAttempts": 0}), "maxAttempts must be between 1 and 100"),
    ("unknown field", make_run({**OK, "dependOn": []}), "unknown field(s) in step 'tool_call.a': dependOn"),
    ("bad failureRate", make_run(step("tool_call.a", tool="fetch_data", failureRate=2)), "failureRate must be between"),
]


@pytest.mark.parametrize(("label", "body", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_submission_is_rejected_with_its_message_and_stores_nothing(conn, settings, label, body, message):
    before = table_counts(conn)
    with pytest.raises(InvalidRun) as err:
        submit_run(conn, body, settings)
    assert message in str(err.value)
    assert table_counts(conn) == before


def test_too_many_steps_and_too_much_input_are_rejected(conn, settings):
    many = make_run(*[step(f"tool_call.s{i}", tool="fetch_data") for i in range(settings.max_steps_per_run + 1)])
    with pytest.raises(TooLarge, match="at most 50 steps"):
        submit_run(conn, many, settings)
    big = make_run(step("tool_call.a", tool="fetch_data", blob="x" * (settings.max_input_bytes + 1)))
    with pytest.raises(TooLarge, match="more than the limit of 65536"):
        submit_run(conn, big, settings)
    assert table_counts(conn)["runs"] == 0


def test_roots_start_ready_and_children_pending(conn, settings):
    run_id, created = submit_run(conn, make_run(OK, step("tool_call.b", ["tool_call.a"], tool="transform")), settings)
    assert created
    statuses = {s.name: s.status for s in store.run_get(conn, run_id).steps}
    assert statuses == {"tool_call.a": "ready", "tool_call.b": "pending"}


def test_repeated_idempotency_key_returns_the_same_run(conn, settings):
    body = make_run(OK, key="order-42")
    first, created = submit_run(conn, body, settings)
    again, created_again = submit_run(conn, body, settings)
    assert created and not created_again and first == again
    with pytest.raises(Conflict, match="already used for a different run"):
        submit_run(conn, make_run(OK, step("tool_call.b", tool="fetch_data"), key="order-42"), settings)


def test_fifty_concurrent_submissions_with_one_key_create_one_run(conn, db_url, settings):
    body = make_run(OK, step("tool_call.b", ["tool_call.a"], tool="transform"), key="same-key")
    barrier = threading.Barrier(50)
    results: list[tuple] = []
    errors: list[BaseException] = []

    def submit() -> None:
        with store.connect(db_url) as own:
            barrier.wait()
            try:
                results.append(submit_run(own, body, settings))
            except (psycopg.Error, InvalidRun) as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert table_counts(conn)["runs"] == 1 and table_counts(conn)["steps"] == 2
