"""Tools offered by workers: what each incarnation advertises when it registers, the defaults its
`@tool(...)` declared, and which ready steps wait for a tool no live worker offers.

A worker is live while it holds its liveness lock (engine/store/workers.py), so "no live worker
offers tool `x`" is read from `pg_locks` at the moment of asking, without waiting for a reaper to
mark the dead worker lost.
"""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine.store.errors import translated
from engine.store.workers import LIVENESS_LOCK_CLASS
from engine.tools.registry import ToolDefaults

_OFFER = """
INSERT INTO tools (name, max_attempts, timeout_seconds, backoff_base, backoff_max)
SELECT * FROM unnest(%(names)s::text[], %(attempts)s::int[], %(timeouts)s::float8[], %(bases)s::float8[],
                     %(caps)s::float8[])
ON CONFLICT (name) DO UPDATE
SET max_attempts = excluded.max_attempts, timeout_seconds = excluded.timeout_seconds,
    backoff_base = excluded.backoff_base, backoff_max = excluded.backoff_max, offered_at = now()
"""

# Two-key advisory locks show in pg_locks as classid = first key, objid = second key, objsubid = 2.
_LIVE_OFFER = """
SELECT 1 FROM workers w
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.classid = %(lock_class)s::oid AND l.objid = w.id::oid
WHERE w.status = 'running' AND s.tool = ANY(w.tools)
"""

_LIVE_TOOLS = """
SELECT DISTINCT unnest(w.tools) AS name FROM workers w
WHERE w.status = 'running' AND EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %(lock_class)s::oid AND l.objid = w.id::oid)
"""

_WAITING = """
SELECT s.id, s.tool FROM steps s
WHERE s.run_id = %(run)s AND s.status = 'ready' AND s.tool IS NOT NULL
  AND NOT EXISTS (""" + _LIVE_OFFER + """)
ORDER BY s.id
"""


@translated
def tools_offer(conn: psycopg.Connection, defaults: dict[str, ToolDefaults]) -> None:
    """Record the users' tools a worker offers and their declared defaults (latest wins)."""
    if not defaults:
        return
    names = sorted(defaults)
    conn.execute(_OFFER, {"names": names,
                          "attempts": [defaults[n].max_attempts for n in names],
                          "timeouts": [defaults[n].timeout_seconds for n in names],
                          "bases": [defaults[n].backoff_base for n in names],
                          "caps": [defaults[n].backoff_max for n in names]})


@translated
def tools_known(conn: psycopg.Connection) -> dict[str, ToolDefaults]:
    """Every user tool any worker has offered, with its declared defaults."""
    rows = conn.execute("SELECT name, max_attempts, timeout_seconds, backoff_base, backoff_max FROM tools").fetchall()
    return {r["name"]: ToolDefaults(r["max_attempts"], r["timeout_seconds"], r["backoff_base"], r["backoff_max"])
            for r in rows}


@translated
def tools_live(conn: psycopg.Connection) -> set[str]:
    """Tool names (built-ins included) that some live worker offers right now."""
    return {r["name"] for r in conn.execute(_LIVE_TOOLS, {"lock_class": LIVENESS_LOCK_CLASS}).fetchall()}


@translated
def steps_waiting_for_tool(conn: psycopg.Connection, run_id: UUID | str) -> dict[int, str]:
    """Ready steps of the run whose tool no live worker offers: step id -> tool."""
    rows = conn.execute(_WAITING, {"run": str(run_id), "lock_class": LIVENESS_LOCK_CLASS}).fetchall()
    return {r["id"]: r["tool"] for r in rows}

