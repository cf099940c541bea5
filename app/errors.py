"""One error handler for the whole app: HTML for pages, JSON for the API, an error id in both, and
never a stack trace or SQL (those go to the log, under the same id)."""
from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from engine.errors import Conflict, EngineError, InvalidRun, NotFound, RateLimited, StoreUnavailable

log = logging.getLogger("app")

STATUS_OF = {InvalidRun: 400, NotFound: 404, Conflict: 409, RateLimited: 429, StoreUnavailable: 503}
TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 413: "Request too large", 415: "Unsupported media type",
          429: "Too many requests", 500: "Something went wrong", 503: "Service unavailable"}


def install(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(EngineError, _engine_error)
    app.register_error_handler(Exception, _unexpected_error)


def wants_json() -> bool:
    if request.path.startswith(("/api/", "/ws/")) or request.path in ("/runs", "/metrics", "/healthz"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, message: str, error_id: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    if wants_json():
        body = {"error": message}
        if error_id:
            body["errorId"] = error_id
        response = jsonify(body)
    else:
        response = Response(render_template("error.html", status=status, title=TITLES.get(status, "Error"),
                                            message=message, error_id=error_id), mimetype="text/html")
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description if status != 413 else "The request body is larger than this server accepts."
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
    return error_response(status, message or TITLES.get(status, "Error"), headers=headers)


def _engine_error(exc: EngineError) -> Response:
    status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 500)
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, RateLimited) else None
    if status >= 500:
        error_id = uuid.uuid4().hex[:12]
        log.warning("error %s: %s", error_id, exc)
        return error_response(status, "The database is unavailable; try again shortly.", error_id, headers)
    return error_response(status, str(exc), headers=headers)


def _unexpected_error(exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.exception("error %s while serving %s %s", error_id, request.method, request.path)
    return error_response(500, "Something went wrong on our side. The error has been logged.", error_id)
