"""The store: the only code that speaks SQL. Functions are named entity first (`step_claim`,
`run_cancel`, `worker_register`) and take a connection or pool from the caller. Reads return the
typed records of `engine.model` (`Run`, `Event`, `WorkerInfo`, ...), never JSON shapes: those are
made at the edge, in `engine.wire`.

Driver errors are translated into the engine's exceptions (`StoreUnavailable`, `RetryableConflict`)
by SQLSTATE in `engine/store/errors.py`, so the worker and the web app handle our exceptions and
never import psycopg's.
"""
from engine.model import Event
from engine.store.connection import connect, connection_check, make_pool, pooled
from engine.store.errors import driver_errors
from engine.store.events import (
    EVENTS_CHANNEL,
    STEPS_READY_CHANNEL,
    event_latest_id,
    events_after,
    events_recent,
    listen,
)
from engine.store.notify import notify_after_commit, wait_for_notify
from engine.store.recovery import reclaim_dead_workers, reclaim_expired_leases
from engine.store.rerun import run_links
from engine.store.runs import (
    run_cancel,
    run_get,
    run_ids,
    run_list,
    run_submit,
    step_redrive,
    steps_by_id,
)
from engine.store.steps import (
    ClaimedStep,
    RecordSummary,
    StepResult,
    step_claim,
    step_claim_session,
    step_heartbeat,
    step_record_and_claim,
    step_record_session,
    step_release,
    step_seconds_until_ready,
)
from engine.store.waits import signals_for_run, step_signal, waits_for_run
from engine.store.workers import (
    worker_lock_liveness,
    worker_register,
    worker_stopped,
    worker_touch,
    workers_list,
)

__all__ = [
    "EVENTS_CHANNEL", "STEPS_READY_CHANNEL", "ClaimedStep", "RecordSummary", "Event", "StepResult", "connect",
    "connection_check", "driver_errors", "pooled", "wait_for_notify",
    "event_latest_id", "events_after", "events_recent", "listen", "make_pool", "notify_after_commit", "reclaim_dead_workers",
    "reclaim_expired_leases", "run_cancel", "run_get", "run_ids", "run_list", "run_submit", "step_claim", "step_claim_session",
    "step_heartbeat", "step_seconds_until_ready", "steps_by_id", "step_record_and_claim", "step_record_session",
    "step_redrive", "step_release",
    "worker_lock_liveness", "worker_register", "worker_stopped",
    "worker_touch", "workers_list",
    # agent primitives
    "run_links", "signals_for_run", "step_signal", "waits_for_run",
]
