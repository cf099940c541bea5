"""The JSON API of DESIGN.md §9, plus `/healthz` and `/metrics`.

No CSRF token is needed (nothing relies on cookies), but a browser on another origin is refused,
and `POST /runs` accepts only `Content-Type: application/json`, which an HTML form cannot send.
"""
from __future__ import annotations

from uuid import UUID

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.exceptions import UnsupportedMediaType

from app.metrics import metrics_text
from app.security import client_id, json_api, rate_limit
from app.state import db, state
from engine import store
from engine.dag import parse_json
from engine.errors import InvalidRun
from engine.eventorder import parse_after
from engine.model import RunStatus, StepStatus
from engine.store.dashboard import database_ping
from engine.store.streams import run_usage
from engine.store.tools import steps_waiting_for_tool
from engine.submit import submit_run
from engine.wire import event_to_api, run_to_api, worker_to_api

bp = Blueprint("api", __name__)

EVENTS_PAGE = 1000
HEALTH_TIMEOUT_SECONDS = 2.0


@bp.post("/runs")
@bp.post("/api/runs")
@json_api
def submit() -> tuple[Response, int]:
    if not request.is_json:
        raise UnsupportedMediaType("send the run as JSON with Content-Type: application/json")
    body = parse_json(request.get_data(cache=False))
    rate_limit("submit", state().web.submits_per_window)
    with db() as conn:
        run_id, created = submit_run(conn, body, state().settings, client=client_id(), enforce_caps=True)
    return jsonify({"runId": str(run_id), "watch": f"/ws/{run_id}",
                    "page": url_for("pages.run_page", run_id=run_id)}), 201 if created else 200


@bp.get("/api/runs/<uuid:run_id>")
def run_status(run_id: UUID) -> Response:
    with db() as conn:
        run = store.run_get(conn, run_id)
        # Runs with LLM steps also carry their usage, cost and budget; a ready step whose tool no
        # live worker offers says so.
        usage = run_usage(conn, run_id) if any(s.kind == "llm_call" for s in run.steps) else None
        waiting = steps_waiting_for_tool(conn, run_id) if run.status == RunStatus.RUNNING else {}
    return jsonify(run_to_api(run, usage, waiting))


@bp.get("/api/runs/<uuid:run_id>/events")
def run_events(run_id: UUID) -> Response:
    after = parse_after(request.args.get("after"))
    if after is None:
        raise InvalidRun("after must be an event id (a non-negative integer)")
    with db() as conn:
        store.run_get(conn, run_id)  # 404 for an unknown run
        events = store.events_after(conn, run_id, after, limit=EVENTS_PAGE)
    return jsonify([event_to_api(e) for e in events])


@bp.post("/api/runs/<uuid:run_id>/cancel")
@json_api
def cancel(run_id: UUID) -> Response:
    rate_limit("action", state().web.actions_per_window)
    with db() as conn:
        cancelled = store.run_cancel(conn, run_id)
    return jsonify({"runId": str(run_id), "status": RunStatus.CANCELLED.value, "stepsCancelled": cancelled})


@bp.post("/api/steps/<int:step_id>/redrive")
@json_api
def redrive(step_id: int) -> Response:
    rate_limit("action", state().web.actions_per_window)
    with db() as conn:
        run_id = store.step_redrive(conn, step_id)
    return jsonify({"stepId": step_id, "runId": str(run_id), "status": StepStatus.READY.value})


@bp.get("/api/workers")
def workers() -> Response:
    with db() as conn:
        found = store.workers_list(conn)
    return jsonify([worker_to_api(w) for w in found])


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
