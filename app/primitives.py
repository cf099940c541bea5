"""The agent primitives over HTTP: signals to wait steps and re-runs, as JSON API endpoints
(DESIGN.md §9) and as the run page's form actions (Approve / Reject, Re-run from here), which carry
a CSRF token and answer with a redirect, so they work without JavaScript."""
from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Blueprint, Response, flash, jsonify, redirect, request, url_for
from werkzeug.exceptions import UnsupportedMediaType

from app.security import client_id, json_api, rate_limit
from app.state import db, state
from engine import store
from engine.dag import check_storable, parse_json
from engine.errors import Conflict, InvalidRun, NotFound, RateLimited
from engine.model import StepStatus
from engine.rerun import rerun_run
from engine.wire import signal_to_api

bp = Blueprint("primitives", __name__)

MAX_COMMENT_CHARS = 500


def _json_object() -> dict[str, Any]:
    if not request.is_json:
        raise UnsupportedMediaType("send a JSON object with Content-Type: application/json")
    # The run API's parser: NaN, NUL, lone surrogates and deep nesting are 400s, not database errors.
    body = parse_json(request.get_data(cache=False))
    if not isinstance(body, dict):
        raise InvalidRun("the body must be a JSON object")
    check_storable(body)
    return body


@bp.post("/api/runs/<uuid:run_id>/signals/<path:step_name>")
@json_api
def signal(run_id: UUID, step_name: str) -> Response:
    """The JSON payload becomes the wait step's output; 409 when it is not waiting any more."""
    payload = _json_object()
    rate_limit("action", state().web.actions_per_window)
    with db() as conn:
        outcome = store.step_signal(conn, run_id, step_name, payload, sender=client_id(),
                                    max_payload_bytes=state().settings.max_input_bytes)
    return jsonify(signal_to_api(run_id, step_name, outcome))


@bp.post("/api/runs/<uuid:run_id>/rerun")
@json_api
def rerun(run_id: UUID) -> tuple[Response, int]:
    body = _json_object()
    unknown = sorted(set(body) - {"fromStep", "input"})
    if unknown:
        raise InvalidRun(f"unknown field(s): {', '.join(unknown)} (allowed: fromStep, input)")
    rate_limit("submit", state().web.submits_per_window)
    with db() as conn:
        new_id = rerun_run(conn, run_id, body.get("fromStep"), body.get("input"), state().settings,
                           client=client_id(), enforce_caps=True)
    return jsonify({"runId": str(new_id), "sourceRunId": str(run_id), "watch": f"/ws/{new_id}",
                    "page": url_for("pages.run_page", run_id=new_id)}), 201


@bp.post("/runs/<uuid:run_id>/signals/<path:step_name>")
def signal_form(run_id: UUID, step_name: str) -> Response:
    """Approve or Reject from the run page: `{"approved": true|false, "comment"}` as the signal."""
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        raise InvalidRun("decision must be approve or reject")
    payload: dict[str, Any] = {"approved": decision == "approve"}
    comment = request.form.get("comment", "").strip()[:MAX_COMMENT_CHARS]
    if comment:
        payload["comment"] = comment
    try:
        rate_limit("action", state().web.actions_per_window)
        with db() as conn:
            outcome = store.step_signal(conn, run_id, step_name, payload, sender=client_id())
        verdict = "approved" if payload["approved"] else "rejected"
        ended = "; the wait is dead-lettered" if outcome.status == StepStatus.DEAD_LETTER else ""
        flash(f"{step_name} {verdict}{ended}.", "ok")
    except (Conflict, NotFound, RateLimited) as exc:
        flash(str(exc), "error")
    return redirect(url_for("pages.run_page", run_id=run_id), 303)


@bp.post("/runs/<uuid:run_id>/rerun")
def rerun_form(run_id: UUID) -> Response:
    """Re-run from here: a new run from the chosen step, with the same inputs."""
    try:
        rate_limit("submit", state().web.submits_per_window)
        with db() as conn:
            new_id = rerun_run(conn, run_id, request.form.get("fromStep"), None, state().settings,
                               client=client_id(), enforce_caps=True)
    except (Conflict, InvalidRun, RateLimited) as exc:
        flash(f"Not re-run: {exc}", "error")
        return redirect(url_for("pages.run_page", run_id=run_id), 303)
    flash(f"Re-run of {run_id} from {request.form.get('fromStep')}.", "ok")
    return redirect(url_for("pages.run_page", run_id=new_id), 303)
