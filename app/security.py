"""Safety for a public page (the README's "Public-demo safety"): security headers with a strict CSP, CSRF tokens on
every form, Origin checks on the JSON API and on WebSocket upgrades, the client's identity for
rate limits, and the rate limits themselves (counted in Postgres, so they hold across processes)."""
from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request, session
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from app.state import db, state
from engine.errors import RateLimited, StoreUnavailable
from engine.store.limits import rate_limit_hit, web_secret

F = TypeVar("F", bound=Callable)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SESSIONLESS_PATHS = ("/healthz", "/metrics", "/static/")
SECRET_TIMEOUT_SECONDS = 3.0
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def json_api(view: F) -> F:
    """Mark a view as JSON API: no CSRF token (no cookies are needed to call it), but a browser
    request from a foreign origin is refused."""
    view.json_api = True  # type: ignore[attr-defined]
    return view


def install(app: Flask) -> None:
    app.session_interface = SharedSecretSessions()
    app.before_request(_check_request)
    app.after_request(_add_headers)
    app.context_processor(lambda: {"csrf_token": csrf_token})


def csrf_token() -> str:
    """This visitor's CSRF token (kept in the signed session cookie)."""
    if not current_app.secret_key:
        raise StoreUnavailable("no session key: the database is unavailable")
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


class SharedSecretSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions. Without SECRET_KEY, every web process signs with one random key kept
    in Postgres, read when first needed rather than at start: the app boots (and /healthz answers
    503) while the database is down, and pages that need a session answer 503 until it is back."""

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key and not request.path.startswith(SESSIONLESS_PATHS):
            try:
                with db(timeout=SECRET_TIMEOUT_SECONDS) as conn:
                    app.secret_key = web_secret(conn, "session")
            except StoreUnavailable:
                return None  # a read-only empty session for this request
        return super().get_signing_serializer(app)


def _check_request() -> None:
    if request.endpoint is None:
        return  # routing answers 404/405
    if not current_app.secret_key and not request.path.startswith(SESSIONLESS_PATHS):
        raise StoreUnavailable("no session key: the database is unavailable")  # fail fast, as 503
    view = current_app.view_functions.get(request.endpoint)
    if request.path.startswith("/ws/"):
        if not origin_allowed(request.headers.get("Origin")):
            abort(403, "WebSocket connections are only accepted from this site's pages.")
        return
    if request.method not in UNSAFE_METHODS:
        return
    if getattr(view, "json_api", False):
        if not origin_allowed(request.headers.get("Origin")):
            abort(403, "Cross-site requests to the API are refused.")
        return
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form's security token is missing or out of date. Reload the page and try again.")


def origin_allowed(origin: str | None) -> bool:
    """No Origin (not a browser) or this site's own origin, or one configured as allowed."""
    if not origin:
        return True
    allowed = {o.strip().rstrip("/") for o in state().web.allowed_origins.split(",") if o.strip()}
    if origin.rstrip("/") in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def _add_headers(response):  # noqa: ANN001, ANN202 - Flask's response object
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def client_id() -> str:
    """Who is asking, for rate limits and run caps: the proxy's client header when configured."""
    header = state().web.client_ip_header
    if header and request.headers.get(header):
        return request.headers[header].split(",")[0].strip()[:100]
    return request.remote_addr or "unknown"


def rate_limit(action: str, limit: int) -> None:
    """Count this request against the client's limit for `action`; raise RateLimited past it."""
    with db() as conn:
        decision = rate_limit_hit(conn, client_id(), action, limit, state().web.rate_window_seconds)
    if not decision.allowed:
        raise RateLimited(f"too many {action} requests; try again in {decision.retry_after_seconds:.0f}s",
                          retry_after=max(1.0, decision.retry_after_seconds))
