"""The WSGI entry point gunicorn loads (in its worker process, after the fork)."""
from __future__ import annotations

from app import create_app

application = create_app()
