"""Per-client rate limits kept in Postgres, so they hold across web processes and machines; and the
web app's shared secrets.

A limit is a fixed window: one row per (client, action, window start) counts the hits in it. The
first hit of a new window deletes windows that ended more than an hour ago, which keeps the table
small without a maintenance job.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg

_HIT = """
INSERT INTO rate_limits (client, action, window_start, hits)
VALUES (%(client)s, %(action)s,
        to_timestamp(floor(extract(epoch FROM now()) / %(window)s) * %(window)s), 1)
ON CONFLICT (client, action, window_start) DO UPDATE SET hits = rate_limits.hits + 1
RETURNING hits,
          extract(epoch FROM window_start + make_interval(secs => %(window)s) - now())::float8 AS window_left
"""

_FORGET_OLD_WINDOWS = "DELETE FROM rate_limits WHERE window_start < now() - interval '1 hour'"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    hits: int
    retry_after_seconds: float


def rate_limit_hit(conn: psycopg.Connection, client: str, action: str, limit: int,
                   window_seconds: float) -> RateDecision:
    """Count one hit of `action` by `client`; allowed while the window holds at most `limit` hits.
    A limit of 0 or less means unlimited (nothing is counted)."""
    if limit <= 0:
        return RateDecision(True, 0, 0.0)
    row = conn.execute(_HIT, {"client": client, "action": action, "window": float(window_seconds)}).fetchone()
    if row["hits"] == 1:
        conn.execute(_FORGET_OLD_WINDOWS)
    return RateDecision(row["hits"] <= limit, row["hits"], max(0.0, row["window_left"]))


def web_secret(conn: psycopg.Connection, name: str) -> str:
    """The shared secret called `name`, created on first use (concurrent first uses agree)."""
    conn.execute("INSERT INTO web_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                 (name, secrets.token_urlsafe(48)))
    return conn.execute("SELECT value FROM web_secrets WHERE name = %s", (name,)).fetchone()["value"]
