"""Human-in-the-loop waits: a `wait.<label>` step sits in `waiting` (holding no worker slot, thread
or connection) until a signal resolves it, or until its timeout passes by the database's clock.

A signal is one fenced UPDATE (`WHERE status = 'waiting'`): of any number of concurrent signals
exactly one matches, the others are refused (409). Every accepted signal, and refused ones up to
REFUSED_SIGNALS_KEPT_PER_RUN per run, is kept in `signals` with its sender and time, and announced
in the audit log (which the public events API serves, so there the sender's address is masked:
`engine.primitives.public_sender`).
"""
from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg

from engine.config import MAX_INPUT_BYTES_DEFAULT
from engine.dag import check_signal_payload
from engine.errors import Conflict, NotFound
from engine.model import Signal, SignalOutcome, StepStatus, Wait
from engine.primitives import REFUSED_SIGNALS_KEPT_PER_RUN, WAIT_KIND, public_sender
from engine.store.errors import translated
from engine.store.ids import as_run_id
from engine.store.notify import notify_after_commit
from engine.store.primitives import steps_promote_after_success
from engine.store.steps import finalize_runs

# A payload with "approved": false rejects a wait whose onReject is 'fail': it is dead-lettered
# (so the run fails unless re-run), and nothing after it runs.
_RESOLVE = """
WITH resolved AS (
    UPDATE steps s
    SET status = CASE WHEN s.wait_on_reject = 'fail' AND %(payload)s::jsonb -> 'approved' = 'false'::jsonb
                      THEN 'dead_letter' ELSE 'succeeded' END,
        output = %(payload)s::jsonb, finished_at = now(), wait_expires_at = NULL,
        last_error = CASE WHEN s.wait_on_reject = 'fail' AND %(payload)s::jsonb -> 'approved' = 'false'::jsonb
                          THEN left(format('rejected by %%s%%s', coalesce(%(public_sender)s, 'unknown'),
                                           ': ' || (%(payload)s::jsonb ->> 'comment')), 2000) END
    WHERE s.run_id = %(run)s AND s.name = %(name)s AND s.status = 'waiting'
    RETURNING s.id, s.status
), target AS (
    SELECT id FROM steps WHERE run_id = %(run)s AND name = %(name)s
), logged AS (
    INSERT INTO signals (run_id, step_id, step_name, payload, sender, accepted)
    VALUES (%(run)s, (SELECT id FROM target), %(name)s, %(payload)s::jsonb, %(sender)s,
            EXISTS (SELECT 1 FROM resolved))
    RETURNING id, accepted, created_at
)
INSERT INTO audit_log (run_id, step_id, worker, event, detail)
SELECT %(run)s, (SELECT id FROM target), %(public_sender)s,
       CASE WHEN logged.accepted THEN 'step_signalled' ELSE 'step_signal_refused' END,
       jsonb_build_object('signalId', logged.id, 'sender', %(public_sender)s::text, 'status', (SELECT status FROM resolved))
FROM logged
RETURNING step_id, event, detail
"""

_EXPIRE = """
WITH expired AS (
    SELECT id FROM steps WHERE status = 'waiting' AND wait_expires_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED
), resolved AS (
    UPDATE steps s
    SET status = CASE WHEN s.wait_on_timeout = 'continue' THEN 'succeeded' ELSE 'dead_letter' END,
        output = CASE WHEN s.wait_on_timeout = 'continue' THEN jsonb_build_object('timedOut', true) END,
        last_error = CASE WHEN s.wait_on_timeout = 'continue' THEN NULL
                          ELSE format('no signal within %%ss', s.wait_timeout_seconds) END,
        finished_at = now(), wait_expires_at = NULL
    FROM expired e WHERE s.id = e.id
    RETURNING s.id, s.run_id, s.status, s.wait_on_timeout
)
INSERT INTO audit_log (run_id, step_id, worker, event, detail)
SELECT run_id, id, %(reaper)s, 'step_timed_out', jsonb_build_object('onTimeout', wait_on_timeout, 'status', status)
FROM resolved ORDER BY id
RETURNING run_id, step_id, detail
"""


# Bounded by a LIMIT, so a run's count costs at most that many index entries to read.
_REFUSED_KEPT = """
SELECT count(*) AS kept FROM (SELECT 1 FROM signals WHERE run_id = %(run)s AND NOT accepted LIMIT %(cap)s) kept
"""


@translated
def step_signal(conn: psycopg.Connection, run_id: UUID | str, step_name: str, payload: dict[str, Any],
                sender: str | None, max_payload_bytes: int = MAX_INPUT_BYTES_DEFAULT) -> SignalOutcome:
    """Resolve the waiting step `step_name` of a run with `payload` as its output. Raises InvalidRun
    or TooLarge for a payload a run's input could not be (`check_signal_payload`), NotFound for an
    unknown run or step, Conflict when the step is not waiting (already resolved, timed out,
    cancelled, or not a wait step); a refused signal is still recorded, up to
    REFUSED_SIGNALS_KEPT_PER_RUN per run."""
    check_signal_payload(payload, max_payload_bytes)
    run_id = as_run_id(run_id)
    with conn.transaction():
        step = conn.execute("SELECT s.id, s.kind, s.status FROM steps s WHERE s.run_id = %s AND s.name = %s",
                            (run_id, step_name)).fetchone()
        if step is None:
            if conn.execute("SELECT 1 FROM runs WHERE id = %s", (run_id,)).fetchone() is None:
                raise NotFound(f"no run {run_id}")
            raise NotFound(f"run {run_id} has no step {step_name[:100]!r}")
        if step["kind"] != WAIT_KIND:
            raise Conflict(f"step {step_name} is not a wait step; only wait.<label> steps take signals")
        if step["status"] != StepStatus.WAITING and conn.execute(
                _REFUSED_KEPT, {"run": run_id, "cap": REFUSED_SIGNALS_KEPT_PER_RUN}).fetchone()["kept"] \
                >= REFUSED_SIGNALS_KEPT_PER_RUN:
            raise Conflict(f"step {step_name} is {step['status']}, not waiting: it was already resolved (this "
                           f"refused signal is not recorded: the run has {REFUSED_SIGNALS_KEPT_PER_RUN} on record)")
        row = conn.execute(_RESOLVE, {"run": run_id, "name": step_name, "payload": json.dumps(payload),
                                      "sender": sender, "public_sender": public_sender(sender)}).fetchone()
        accepted = row["event"] == "step_signalled"
        if accepted:
            if row["detail"]["status"] == StepStatus.SUCCEEDED:
                steps_promote_after_success(conn, [row["step_id"]])
            finalize_runs(conn, [run_id])
    notify_after_commit(conn, steps_ready=accepted)  # a refused signal is audited too
    if not accepted:
        current = conn.execute("SELECT status FROM steps WHERE id = %s", (row["step_id"],)).fetchone()
        raise Conflict(f"step {step_name} is {current['status']}, not waiting: it was already resolved")
    return SignalOutcome(row["step_id"], StepStatus(row["detail"]["status"]), row["detail"]["signalId"])


@translated
def waits_expire(conn: psycopg.Connection, reaper: str) -> int:
    """Resolve every wait whose timeout has passed by the database's clock, as its onTimeout says."""
    with conn.transaction():
        rows = conn.execute(_EXPIRE, {"reaper": reaper}).fetchall()
        if rows:
            steps_promote_after_success(
                conn, [r["step_id"] for r in rows if r["detail"]["status"] == StepStatus.SUCCEEDED])
            finalize_runs(conn, sorted({r["run_id"] for r in rows}, key=str))
    if rows:
        notify_after_commit(conn, steps_ready=True)
    return len(rows)


def waits_for_run(conn: psycopg.Connection, run_id: UUID | str) -> list[Wait]:
    """The run's wait steps, in step order, with their prompt and time left."""
    rows = conn.execute(
        """
        SELECT id, name, status, coalesce(input ->> 'prompt', '') AS prompt, wait_expires_at,
               extract(epoch FROM wait_expires_at - now())::float8 AS seconds_left,
               wait_on_timeout, wait_on_reject
        FROM steps WHERE run_id = %s AND kind = 'wait' ORDER BY id
        """, (as_run_id(run_id),)).fetchall()
    return [Wait(r["id"], r["name"], StepStatus(r["status"]), r["prompt"], r["wait_expires_at"],
                     max(0.0, r["seconds_left"]) if r["seconds_left"] is not None else None,
                     r["wait_on_timeout"], r["wait_on_reject"]) for r in rows]


def signals_for_run(conn: psycopg.Connection, run_id: UUID | str) -> list[Signal]:
    """The signals recorded for the run's waits (every accepted one, refused ones up to
    REFUSED_SIGNALS_KEPT_PER_RUN), oldest first."""
    rows = conn.execute("SELECT id, step_name, payload, sender, accepted, created_at FROM signals "
                        "WHERE run_id = %s ORDER BY id", (as_run_id(run_id),)).fetchall()
    return [Signal(**row) for row in rows]
