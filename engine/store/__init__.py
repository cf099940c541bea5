"""The store: the only code that speaks SQL. Functions are named entity first (`step_claim`,
`run_cancel`, `worker_register`) and take a connection or pool from the caller.

Driver errors that mean "the database is gone" are translated into `StoreUnavailable` here, so the
worker and the web app handle one exception of ours instead of psycopg's.
"""
from engine.store.connection import connect, make_pool, unavailable_errors
from engine.store.events import (
    EVENTS_CHANNEL,
    STEPS_READY_CHANNEL,
    Event,
    event_latest_id,
    events_after,
    events_recent,
    listen,
)
from engine.store.recovery import reclaim_dead_workers, reclaim_expired_leases
from engine.store.runs import (
    run_cancel,
    run_get,
    run_ids,
    run_list,
    run_submit,
    step_redrive,
)
from engine.store.steps import (
    ClaimedStep,
    RecordSummary,
    StepResult,
    notify_after_commit,
    step_claim,
    step_claim_session,
    step_heartbeat,
    step_record_and_claim,
    step_release,
    step_seconds_until_ready,
)
from engine.store.workers import (
    worker_lock_liveness,
    worker_register,
    worker_stopped,
    worker_touch,
    workers_list,
)

__all__ = [
    "EVENTS_CHANNEL", "STEPS_READY_CHANNEL", "ClaimedStep", "RecordSummary", "Event", "StepResult", "connect",
    "event_latest_id", "events_after", "events_recent", "listen", "make_pool", "notify_after_commit", "reclaim_dead_workers",
    "reclaim_expired_leases", "run_cancel", "run_get", "run_ids", "run_list", "run_submit", "step_claim", "step_claim_session",
    "step_heartbeat", "step_seconds_until_ready", "step_record_and_claim", "step_redrive", "step_release",
    "unavailable_errors", "worker_lock_liveness", "worker_register", "worker_stopped",
    "worker_touch", "workers_list",
]
