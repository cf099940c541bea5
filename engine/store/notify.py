"""The one way to send NOTIFY, and the one way to wait for it.

NOTIFY is only a wake-up (payloads are empty; listeners read rows by id). A transaction that
notifies takes a cluster-wide lock at pre-commit and holds it until its commit is flushed, so every
notifying transaction commits one after another. The data transactions therefore never notify:
`notify_after_commit` runs after their commit, as its own tiny transaction with an asynchronous
commit (nothing in it needs to be durable), and holds that lock only briefly. See
docs/ARCHITECTURE.md ("NOTIFY after commit").
"""
from __future__ import annotations

import logging

import psycopg

from engine.errors import StoreUnavailable
from engine.store.errors import translated
from engine.store.events import EVENTS_CHANNEL, STEPS_READY_CHANNEL

log = logging.getLogger("engine.store")

_NOTIFY_AFTER_COMMIT = """
SELECT set_config('synchronous_commit', 'off', true),
       pg_notify(%(events)s, ''),
       CASE WHEN %(steps_ready)s THEN pg_notify(%(ready)s, '') END
"""


# After a record: the same wake-up, sent in the record's own pipeline right behind its COMMIT (no
# round trip of its own). Other workers are told about claimable steps only when the record made
# some ready that the recorder's claim in the same transaction left behind. Which steps it made
# ready, the record statement leaves in the session setting `RECORD_READY_SETTING` (it survives
# the commit; the ids are not known here when the pipeline is sent), so this is a probe of those
# rows by primary key. It was a scan of every step of the batch's runs (0.5 ms per record of a
# batch of 25-step runs). A batch that expanded a map made ready steps the record does not list:
# then (`maps`) the runs are scanned as before.
RECORD_READY_SETTING = "dae.record_ready"
_NOTIFY_AFTER_RECORD = """
SELECT set_config('synchronous_commit', 'off', true),
       pg_notify(%(events)s, ''),
       CASE WHEN EXISTS (SELECT 1 FROM steps
                         WHERE id = ANY(string_to_array(nullif(current_setting(
                                            '""" + RECORD_READY_SETTING + """', true), ''), ',')::bigint[])
                           AND status = 'ready' AND run_at <= now())
                 OR (%(maps)s AND EXISTS (SELECT 1 FROM steps WHERE run_id = ANY(%(runs)b::uuid[])
                                                                AND status = 'ready' AND run_at <= now()))
            THEN pg_notify(%(ready)s, '') END
"""


def queue_notify_after_record(conn: psycopg.Connection, runs: list, maps: bool = False) -> None:
    """In pipeline mode, after the record's transaction block: queue the wake-up; it runs as its own
    implicit transaction once the COMMIT before it is done. The caller decides what a failure
    means (the data is committed by then). `maps`: the batch expanded map steps."""
    conn.execute(_NOTIFY_AFTER_RECORD, {"events": EVENTS_CHANNEL, "ready": STEPS_READY_CHANNEL, "runs": runs,
                                        "maps": maps})


def notify_after_commit(conn: psycopg.Connection, steps_ready: bool) -> None:
    """Announce committed audit rows (and, with `steps_ready`, claimable steps) in one round trip.
    A lost wake-up costs latency only (every listener also polls), so an outage here is logged,
    not raised: the data it announces is already committed."""
    # Called by a store function that a caller wrapped in its own transaction (a test composing
    # writes), the NOTIFY is part of that transaction and is delivered at its commit, as Postgres
    # does for any NOTIFY: still after the data, never before.
    try:
        _notify(conn, steps_ready)
    except StoreUnavailable as exc:
        log.debug("wake-up not sent (%s); listeners will poll", exc)


@translated
def _notify(conn: psycopg.Connection, steps_ready: bool) -> None:
    conn.execute(_NOTIFY_AFTER_COMMIT, {"events": EVENTS_CHANNEL, "ready": STEPS_READY_CHANNEL,
                                        "steps_ready": steps_ready})


@translated
def wait_for_notify(conn: psycopg.Connection, timeout: float) -> bool:
    """Wait up to `timeout` seconds for one notification on a LISTENing connection; True if one came."""
    return any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
