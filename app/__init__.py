"""The web app: server-rendered pages with live updates over WebSockets, the JSON API, and the
Kill-worker chaos button. `create_app(config)` builds it; `python -m app` serves it with gunicorn.

Blueprints: `pages` (HTML), `api` (JSON, `/healthz`, `/metrics`), `primitives` (signals and
re-runs, JSON and forms), `live` (WebSockets) and `chaos` (Kill worker). All database access goes through `engine.store`.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from app import errors, security, sockets
from app.broadcast import Broadcaster
from app.config import WebSettings
from app.state import AppState
from engine.config import Settings
from engine.store import make_pool

# In a checkout, templates/ and static/ sit beside app/; `pip install .` ships them inside the
# package as app/_templates and app/_static (pyproject.toml's package-dir).
_INSTALLED = not (Path(__file__).resolve().parent.parent / "templates").is_dir()
ROOT_FOLDERS = ({"template_folder": "_templates", "static_folder": "_static"} if _INSTALLED
                else {"template_folder": "../templates", "static_folder": "../static"})


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `config` may hold `settings` (engine Settings), `web` (WebSettings) and
    plain Flask config keys; missing settings are read from the environment."""
    config = dict(config or {})
    settings: Settings = config.pop("settings", None) or Settings.from_env()
    web: WebSettings = config.pop("web", None) or WebSettings.from_env()
    app = Flask(__name__, **ROOT_FOLDERS)
    app.config.update(
        MAX_CONTENT_LENGTH=web.max_body_bytes, MAX_FORM_MEMORY_SIZE=web.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=web.secure_cookies,
        SESSION_COOKIE_NAME="dae_session", PERMANENT_SESSION_LIFETIME=timedelta(days=7),
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False, DEBUG=False, PROPAGATE_EXCEPTIONS=False,
    )
    app.config.update(config)
    app.debug = False
    pool = make_pool(settings.database_url, min_size=1, max_size=web.web_db_pool_size, application_name="dae-web")
    broadcaster = Broadcaster(settings.database_url, web.live_gap_seconds, web.live_poll_seconds)
    app.extensions["dae"] = AppState(settings, web, pool, broadcaster)
    app.secret_key = web.secret_key or None
    _configure_logging(app, settings.log_level)
    security.install(app)
    sockets.install(app, web)
    errors.install(app)
    _register_blueprints(app)
    app.jinja_env.globals["chaos_enabled"] = web.chaos_enabled
    return app


def _register_blueprints(app: Flask) -> None:
    from app import api, chaos, filters, live, pages, primitives, streaming
    filters.install(app)
    streaming.install(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(primitives.bp)
    app.register_blueprint(chaos.bp)
    app.register_blueprint(live.bp)


def _configure_logging(app: Flask, level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), format="%(asctime)s web %(levelname)s %(name)s: %(message)s")
    app.logger.setLevel(level.upper())
