"""The JSON API of DESIGN.md §9, plus `/healthz` and `/metrics`.

No CSRF token is needed (nothing relies on cookies), but a browser on another origin is refused,
and `POST /runs` accepts only `Content-Type: application/json`, which an HTML form cannot send.
"""
from __future__ import annotations

from uuid import UUID

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.metrics import metrics_text
from app.security import client_id, json_api, rate_limit
from app.state import db, state
from engine import store
from engine.errors import InvalidRun
from engine.store.dashboard import database_ping
from engine.store.runs import run_to_api
from engine.store.tools import steps_waiting_for_tool, waiting_reason
from engine.submit import submit_run

bp = Blueprint("api", __name__)

EVENTS_PAGE = 1000
HEALTH_TIMEOUT_SECONDS = 2.0


@bp.post("/runs")
@bp.post("/api/runs")
@json_api
def submit() -> tuple[Response, int]:
    if not request.is_json:
        raise UnsupportedMediaType("send the run as JSON with Content-Type: application/json")
    try:
        body = request.get_json()
    except BadRequest:
        raise InvalidRun("malformed JSON: the request body could not be parsed") from None
    rate_limit("submit", state().web.submits_per_window)
    with db() as conn:
        run_id, created = submit_run(conn, body, state().settings, client=client_id(), enforce_caps=True)
    return jsonify({"runId": str(run_id), "watch": f"/ws/{run_id}",
                    "page": url_for("pages.run_page", run_id=run_id)}), 201 if created else 200


@bp.get("/api/runs/<uuid:run_id>")
def run_status(run_id: UUID) -> Response:
    with db() as conn:
        run = store.run_get(conn, run_id)
        waiting = steps_waiting_for_tool(conn, run_id)
    body = run_to_api(run)
    for step in body["steps"]:  # only a step that waits for a tool gets the extra field
        if step["id"] in waiting:
            step["waiting"] = waiting_reason(waiting[step["id"]])
    return jsonify(body)


@bp.get("/api/runs/<uuid:run_id>/events")
def run_events(run_id: UUID) -> Response:
    after = request.args.get("after", "0")
    if not after.isdigit():
        raise InvalidRun("after must be an event id (a non-negative integer)")
    with db() as conn:
        store.run_get(conn, run_id)  # 404 for an unknown run
        events = store.events_after(conn, run_id, int(after), limit=EVENTS_PAGE)
    return jsonify([e.to_api() for e in events])


@bp.post("/api/runs/<uuid:run_id>/cancel")
@json_api
def cancel(run_id: UUID) -> Response:
    rate_limit("action", state().web.actions_per_window)
    with db() as conn:
        cancelled = store.run_cancel(conn, run_id)
    return jsonify({"runId": str(run_id), "status": "cancelled", "stepsCancelled": cancelled})


@bp.post("/api/steps/<int:step_id>/redrive")
@json_api
def redrive(step_id: int) -> Response:
    rate_limit("action", state().web.actions_per_window)
    with db() as conn:
        run_id = store.step_redrive(conn, step_id)
    return jsonify({"stepId": step_id, "runId": str(run_id), "status": "ready"})


@bp.get("/api/workers")
def workers() -> Response:
    with db() as conn:
        rows = store.workers_list(conn)
    return jsonify([{"name": w["name"], "pid": w["pid"], "host": w["host"], "status": w["status"],
                     "lastSeen": w["last_seen"].isoformat(), "running": list(w["running"])} for w in rows])


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        with db(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            database_ping(conn)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy; say which kind only
        return jsonify({"status": "unavailable", "database": type(exc).__name__}), 503
    return jsonify({"status": "ok", "database": "ok"}), 200


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = metrics_text()
    return Response(body, content_type=content_type)
