"""Numbers in a run body: JSON does not tell 60 from 60.0, so validation gives every numeric step
field one type (issue 15, defect 1: an explicit integer `timeoutSeconds` next to a step that took
the float default made psycopg refuse the array of mixed types, and `POST /runs` answered 500)."""
from __future__ import annotations

from engine.config import Settings
from engine.dag import parse_run
from engine.submit import submit_run
from engine.tools import tool_names
from engine.verify import verify_run
from tests.helpers import make_run, step

# One step with every numeric field written as a JSON integer, one with floats, one with defaults.
MIXED = make_run(
    step("tool_call.ints", tool="fetch_data", max_attempts=3, timeout=60, backoff={"baseSeconds": 1, "maxSeconds": 30}),
    step("tool_call.floats", tool="fetch_data", timeout=60.5, backoff={"baseSeconds": 0.5, "maxSeconds": 2.5}),
    step("tool_call.defaults", ["tool_call.ints", "tool_call.floats"], tool="transform"),
    goal="integers next to floats and defaults",
)


def test_validation_gives_each_numeric_field_one_type_whatever_the_json_said() -> None:
    spec = parse_run(MIXED, Settings.from_env({}), tool_names())
    for field, wanted in (("timeout_seconds", float), ("backoff_base", float), ("backoff_max", float),
                          ("max_attempts", int)):
        assert {type(getattr(s, field)) for s in spec.steps} == {wanted}, field
    assert [s.timeout_seconds for s in spec.steps][:2] == [60.0, 60.5]


def test_a_run_mixing_integers_floats_and_defaults_is_stored_with_its_values(conn, settings) -> None:
    run_id, created = submit_run(conn, MIXED, settings)
    assert created
    rows = conn.execute("SELECT name, max_attempts, timeout_seconds, backoff_base, backoff_max FROM steps "
                        "WHERE run_id = %s", (run_id,)).fetchall()
    stored = {row["name"]: (row["max_attempts"], row["timeout_seconds"], row["backoff_base"], row["backoff_max"])
              for row in rows}
    assert stored["tool_call.ints"] == (3, 60, 1, 30)
    assert stored["tool_call.floats"][1:] == (60.5, 0.5, 2.5)
    assert stored["tool_call.defaults"][1] == settings.step_timeout_seconds
    assert verify_run(conn, str(run_id)) == []
