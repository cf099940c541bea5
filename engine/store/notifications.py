"""The `notify` tool's side effect: one row per idempotency key, so it happens once per step."""
from __future__ import annotations

from uuid import UUID

import psycopg

from engine.store.errors import translated

# The attempt that wrote the row, whether this statement wrote it or an earlier one did.
_RECORD = """
WITH sent AS (
    INSERT INTO notifications (idempotency_key, run_id, message, attempt)
    VALUES (%(key)s, %(run_id)s, %(message)s, %(attempt)s)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING attempt
)
SELECT attempt FROM sent
UNION ALL
SELECT attempt FROM notifications WHERE idempotency_key = %(key)s AND NOT EXISTS (SELECT 1 FROM sent)
"""



@translated
def notification_record(conn: psycopg.Connection, key: str, run_id: UUID | str, message: str, attempt: int) -> bool:
    """Record a notification; True if this attempt sent it, False if an earlier attempt had. A retry
    after a lost reply (the insert committed, the connection died) finds its own attempt's row and
    still says True: attempt numbers are never reused."""
    row = conn.execute(_RECORD, {"key": key, "run_id": run_id, "message": message, "attempt": attempt}).fetchone()
    return row is not None and row["attempt"] == attempt


@translated
def notifications_for_run(conn: psycopg.Connection, run_id: UUID | str) -> list[dict]:
    return conn.execute("SELECT idempotency_key, message, attempt, created_at FROM notifications "
                        "WHERE run_id = %s ORDER BY created_at", (run_id,)).fetchall()
