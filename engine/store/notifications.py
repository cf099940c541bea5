"""The `notify` tool's side effect: one row per idempotency key, so it happens once per step."""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine.store.errors import translated


@translated
def notification_record(conn: psycopg.Connection, key: str, run_id: UUID | str, message: str, attempt: int) -> bool:
    """Record a notification; True if this call sent it, False if it had already been sent."""
    row = conn.execute(
        "INSERT INTO notifications (idempotency_key, run_id, message, attempt) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
        (key, run_id, message, attempt)).fetchone()
    return row is not None


@translated
def notifications_for_run(conn: psycopg.Connection, run_id: UUID | str) -> list[dict]:
    return conn.execute("SELECT idempotency_key, message, attempt, created_at FROM notifications "
                        "WHERE run_id = %s ORDER BY created_at", (run_id,)).fetchall()
