"""Fixtures of the in-process web tests: the Flask app on a fresh database, and its test client."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import WebSettings
from engine.config import Settings
from tests.web.support import WEB_TEST_ENV


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings.from_env(WEB_TEST_ENV)


@pytest.fixture
def app(settings: Settings, web_settings: WebSettings) -> Iterator[Flask]:
    flask_app = create_app({"settings": settings, "web": web_settings, "TESTING": True})
    yield flask_app
    flask_app.extensions["dae"].broadcaster.stop()
    flask_app.extensions["dae"].pool.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
