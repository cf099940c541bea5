"""HTML pages: the dashboard with the submit form, the run page, the dead letters; and the form
actions (submit, cancel, redrive). Forms post back here with a CSRF token and are answered with a
redirect, so they work without JavaScript; htmx only adds the live updates."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from app.context import dashboard_context, dead_letters_context, run_context
from app.filters import clock, step_label
from app.forms import FormValues, run_body
from app.security import client_id, rate_limit
from app.state import db, state
from app.workflows import WORKFLOWS
from engine import store
from engine.errors import Conflict, InvalidRun, RateLimited
from engine.submit import submit_run

bp = Blueprint("pages", __name__)


@bp.get("/")
def dashboard() -> str:
    return render_dashboard(FormValues())


def render_dashboard(values: FormValues, error: str | None = None, status: int = 200) -> Response:
    with db() as conn:
        context = dashboard_context(conn)
    page = render_template("dashboard.html", form=values, error=error, workflows=WORKFLOWS.values(), **context)
    return Response(page, status=status, mimetype="text/html")


@bp.post("/submit")
def submit() -> Response:
    values = FormValues.from_form(request.form)
    settings = state().settings
    try:
        rate_limit("submit", state().web.submits_per_window)
        body = run_body(values, settings)
        with db() as conn:
            run_id, _ = submit_run(conn, body, settings, client=client_id(), enforce_caps=True)
    except InvalidRun as exc:
        return render_dashboard(values, f"Not submitted: {exc}", 400)
    except Conflict as exc:
        return render_dashboard(values, f"Not submitted: {exc}", 409)
    except RateLimited as exc:
        return render_dashboard(values, f"Not submitted: {exc}", 429)
    return redirect(url_for("pages.run_page", run_id=run_id), 303)


@bp.get("/workflows/preview")
def workflow_preview() -> str:
    """The selected workflow as JSON in the advanced box (the form's "Edit as JSON" button)."""
    values = FormValues.from_form(request.args)
    try:
        text = json.dumps(run_body(FormValues(values.workflow, values.goal, values.failure_rate,
                                              values.branches), state().settings), indent=2)
    except InvalidRun as exc:
        text = f"// {exc}"
    return render_template("_advanced_json.html", text=text)


@bp.get("/runs/<uuid:run_id>")
def run_page(run_id: UUID) -> str:
    with db() as conn:
        context = run_context(conn, run_id)
    return render_template("run.html", page_path=request.path, **context)


@bp.post("/runs/<uuid:run_id>/cancel")
def cancel(run_id: UUID) -> Response:
    rate_limit("action", state().web.actions_per_window)
    try:
        with db() as conn:
            cancelled = store.run_cancel(conn, run_id)
        flash(f"At {clock(datetime.now(UTC))} you cancelled the run ({cancelled} unfinished step(s) "
              "cancelled).", "ok")
    except Conflict as exc:
        flash(str(exc), "error")
    return redirect(url_for("pages.run_page", run_id=run_id), 303)


@bp.post("/steps/<int:step_id>/redrive")
def redrive(step_id: int) -> Response:
    """Redrive, then show the step's run, where the visitor can watch the fresh attempts."""
    rate_limit("action", state().web.actions_per_window)
    try:
        with db() as conn:
            run_id = store.step_redrive(conn, step_id)
            name = store.steps_by_id(conn, [step_id])[step_id].name
        # Said in the past tense with its time: the page goes on changing live below the message.
        flash(f"At {clock(datetime.now(UTC))} you redrove {step_label(name)}: it got a fresh budget of "
              "attempts and its run was re-opened. Watch it below.", "ok")
    except Conflict as exc:
        flash(str(exc), "error")
        return redirect(url_for("pages.dead_letters"), 303)
    return redirect(url_for("pages.run_page", run_id=run_id), 303)


@bp.get("/how-it-works")
def how_it_works() -> str:
    return render_template("how_it_works.html", settings=state().settings)


@bp.get("/dead-letters")
def dead_letters() -> str:
    with db() as conn:
        context = dead_letters_context(conn)
    return render_template("dead_letters.html", **context)


def local_target(url: str | None) -> str | None:
    """A redirect target from a form, only if it is a path on this site."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return None
