"""Validation of the primitives' fields, the map collector and the DAG's collapsed map node: no
database needed."""
from __future__ import annotations

import pytest

from app.dag_svg import display_status
from app.primitives_view import collapse_map_children
from engine.config import Settings
from engine.dag import parse_run
from engine.errors import InvalidRun
from engine.model import StepStatus
from engine.primitives import collect_map_outputs, public_sender
from tests.records import step_record

TOOLS = {"fetch_data", "plan", "transform"}
SETTINGS = Settings(max_map_items=10)


def run(*steps: dict, **fields: object) -> dict:
    return {"goal": "g", "steps": list(steps), **fields}


def test_a_map_step_depends_on_its_source_and_defaults_max_items_to_the_cap():
    spec = parse_run(run({"name": "tool_call.plan", "input": {"tool": "plan"}},
                         {"name": "tool_call.each", "input": {"tool": "fetch_data"}, "map": "tool_call.plan"}),
                     SETTINGS, TOOLS)
    each = spec.steps[1]
    assert each.depends_on == ("tool_call.plan",)
    assert each.primitives.map_source == "tool_call.plan" and each.primitives.max_items == 10


@pytest.mark.parametrize(("step", "message"), [
    ({"name": "tool_call.each", "input": {"tool": "fetch_data"}, "map": "tool_call.plan", "maxItems": 11},
     "maxItems must be between 1 and 10"),
    ({"name": "tool_call.each", "input": {"tool": "fetch_data"}, "maxItems": 3}, "maxItems needs map"),
    ({"name": "tool_call.each", "input": {"tool": "fetch_data"}, "map": "tool_call.nope"}, "unknown step"),
    ({"name": "wait.ok", "map": "tool_call.plan"}, "cannot be a map step"),
    ({"name": "tool_call.each", "input": {"tool": "fetch_data"}, "map": "wait.ok"}, "cannot fan out over a wait"),
    ({"name": "wait.ok", "input": {"onTimeout": "explode"}}, "onTimeout must be one of"),
    ({"name": "wait.ok", "input": {"timeoutSeconds": -1}}, "timeoutSeconds must be between"),
    ({"name": "wait.ok", "input": {"onReject": "maybe"}}, "onReject must be one of"),
    ({"name": "tool_call.later", "input": {"tool": "plan"}, "delaySeconds": "soon"}, "delaySeconds must be a number"),
])
def test_bad_primitive_fields_are_refused_with_a_clear_message(step, message):
    with pytest.raises(InvalidRun, match=message):
        parse_run(run({"name": "tool_call.plan", "input": {"tool": "plan"}}, step), SETTINGS, TOOLS)


def test_deadline_is_validated_and_changes_the_request_hash():
    plain = parse_run(run({"name": "tool_call.plan", "input": {"tool": "plan"}}), SETTINGS, TOOLS)
    timed = parse_run(run({"name": "tool_call.plan", "input": {"tool": "plan"}}, deadlineSeconds=5), SETTINGS, TOOLS)
    assert timed.deadline_seconds == 5 and plain.deadline_seconds is None
    assert timed.request_hash != plain.request_hash
    with pytest.raises(InvalidRun, match="deadlineSeconds"):
        parse_run(run({"name": "tool_call.plan", "input": {"tool": "plan"}}, deadlineSeconds=0), SETTINGS, TOOLS)


def test_numeric_fields_are_floats_whether_sent_as_int_or_float():
    spec = parse_run(run({"name": "tool_call.a", "input": {"tool": "plan"}, "backoff": {"baseSeconds": 1, "maxSeconds": 4}},
                         {"name": "wait.b", "input": {"timeoutSeconds": 60}, "delaySeconds": 2}), SETTINGS, TOOLS)
    values = [spec.steps[0].backoff_base, spec.steps[0].backoff_max, spec.steps[1].timeout_seconds,
              spec.steps[1].primitives.delay_seconds, spec.steps[1].primitives.wait_timeout_seconds]
    assert all(type(v) is float for v in values)


def test_collected_outputs_follow_item_order_not_name_order():
    parents = {"tool_call.each[10]": {"i": 10}, "tool_call.each[2]": {"i": 2}, "tool_call.plan": {"items": []},
               "tool_call.each[0]": {"i": 0}}
    assert collect_map_outputs("tool_call.each", parents) == {"items": [{"i": 0}, {"i": 2}, {"i": 10}], "count": 3}


def map_run(child_status: StepStatus, child_attempt: int = 1) -> list:
    """plan → each[0..2] → each (map) → after, with child 1 in `child_status`."""
    def s(step_id: int, name: str, deps: list[str], status: StepStatus = StepStatus.SUCCEEDED,
          attempt: int = 1, kind: str | None = None) -> object:
        return step_record(step_id, name, status, attempt, deps, **({"kind": kind} if kind else {}))
    children = [s(3 + i, f"tool_call.each[{i}]", ["tool_call.plan"], child_status if i == 1 else StepStatus.SUCCEEDED,
                  child_attempt if i == 1 else 1) for i in range(3)]
    return [s(1, "tool_call.plan", []), s(2, "tool_call.each", ["tool_call.plan", *[c.name for c in children]], kind="map"),
            *children, s(6, "tool_call.after", ["tool_call.each"])]


def test_map_children_collapse_into_one_node_between_source_and_map_step():
    collapsed = {c.name: c for c in collapse_map_children(map_run(StepStatus.RUNNING))}
    assert set(collapsed) == {"tool_call.plan", "tool_call.each", "tool_call.each ×3", "tool_call.after"}
    assert collapsed["tool_call.each"].depends_on == ("tool_call.plan", "tool_call.each ×3")
    assert collapsed["tool_call.each ×3"].depends_on == ("tool_call.plan",)
    assert display_status(collapsed["tool_call.each ×3"]) == "running"


def test_a_collapsed_node_shows_a_child_waiting_for_its_retry():
    collapsed = {c.name: c for c in collapse_map_children(map_run(StepStatus.READY, child_attempt=2))}
    assert display_status(collapsed["tool_call.each ×3"]) == "retrying"
    assert collapsed["tool_call.each ×3"].attempt == 2


def test_public_sender_masks_the_host_part_of_an_address_only():
    assert public_sender("203.0.113.7") == "203.0.113.x"
    assert public_sender("2001:db8:1:2::5") == "2001:db8:1::x"
    assert public_sender("cli:alice") == "cli:alice"
    assert public_sender(None) is None
