"""Submitting a run: validate the body against the registered tools and limits, then store it in
one transaction. The web app, the CLI and the tests all go through here."""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine import store
from engine.config import Settings
from engine.dag import parse_run
from engine.tools import tool_names


def submit_run(conn: psycopg.Connection, body: object, settings: Settings, client: str | None = None,
               enforce_caps: bool = False) -> tuple[UUID, bool]:
    """Returns (run id, created). Raises InvalidRun/TooLarge (nothing stored), Conflict for a reused
    idempotency key with a different body, RateLimited when active-run caps are hit."""
    spec = parse_run(body, settings, tool_names())
    caps = (settings.max_active_runs, settings.max_active_runs_per_client) if enforce_caps else (0, 0)
    return store.run_submit(conn, spec, client=client, max_active=caps[0], max_active_per_client=caps[1],
                            reserved_for_new_clients=settings.reserved_active_runs if enforce_caps else 0)
