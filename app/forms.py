"""The dashboard's submit form: what the visitor typed, turned into a run body or an error
message, keeping every value so the form can be shown again as it was."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from app.workflows import MAX_BRANCHES, MAX_FAILURE_RATE, WORKFLOWS, Knobs, build_run
from engine.config import Settings
from engine.dag import MAX_GOAL_CHARS
from engine.errors import InvalidRun


@dataclass
class FormValues:
    workflow: str = "research"
    goal: str = ""
    failure_rate: str = ""
    branches: str = ""
    advanced_json: str = ""

    @classmethod
    def from_form(cls, form: MultiDict) -> FormValues:
        return cls(**{name: str(form.get(name, default))[:100_000] for name, default in asdict(cls()).items()})


def run_body(values: FormValues, settings: Settings) -> dict[str, Any]:
    """The run to submit. Raises InvalidRun with a message for the visitor."""
    if values.advanced_json.strip():
        try:
            return json.loads(values.advanced_json)
        except json.JSONDecodeError as exc:
            raise InvalidRun(f"the JSON is malformed: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    workflow = WORKFLOWS.get(values.workflow)
    if workflow is None:
        raise InvalidRun("choose one of the workflows")
    goal = values.goal.strip() or workflow.default_goal
    if len(goal) > MAX_GOAL_CHARS:
        raise InvalidRun(f"the goal is longer than {MAX_GOAL_CHARS} characters")
    knobs = Knobs(goal, _failure_rate(values.failure_rate), _branches(values.branches, workflow.default_branches))
    return build_run(workflow.key, knobs, settings)


def _failure_rate(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        rate = float(raw)
    except ValueError:
        raise InvalidRun("failure rate must be a number between 0 and 0.8") from None
    if not 0 <= rate <= MAX_FAILURE_RATE:
        raise InvalidRun(f"failure rate must be between 0 and {MAX_FAILURE_RATE:g}")
    return rate


def _branches(raw: str, default: int) -> int:
    if not raw.strip():
        return default
    try:
        branches = int(raw)
    except ValueError:
        raise InvalidRun(f"branches must be a whole number from 1 to {MAX_BRANCHES}") from None
    if not 1 <= branches <= MAX_BRANCHES:
        raise InvalidRun(f"branches must be from 1 to {MAX_BRANCHES}")
    return branches
