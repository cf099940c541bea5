"""The worker's maintenance loop: renews the leases of its own steps (and stops work on any that
were taken away), records timeouts, and reaps other workers' steps — at once when a worker's
liveness lock is free (it died), or when a lease expired (it is stuck or cut off)."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from engine import store
from engine.store import unavailable_errors
from engine.store.maintenance import PRUNE_BATCH, runs_prune, runs_prune_to_budget
from worker.connections import ReconnectingConnection, StopRequested

if TYPE_CHECKING:
    from worker.worker import Worker

log = logging.getLogger("worker")

LEASE_SWEEP_SECONDS = 1.0  # expired leases are rarer than deaths; no need to look as often
PRUNE_SECONDS = 60.0  # retention is counted in hours; once a minute is plenty


class Reaper:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        settings = worker.settings
        self.settings = settings
        self.conn = ReconnectingConnection(settings.database_url, f"{worker.name}:reaper", worker.shutdown)
        self.next_heartbeat = 0.0
        self.next_lease_sweep = 0.0
        self.next_prune = 0.0

    def loop(self) -> None:
        while not self.worker.shutdown.is_set():
            self.run_once()
            self.worker.shutdown.wait(self.settings.reaper_interval_seconds)
        self.conn.close()

    def run_once(self, now: float | None = None) -> int:
        """One pass: timeouts, heartbeats when due, dead workers, expired leases when due.
        Returns the number of steps reclaimed."""
        now = time.monotonic() if now is None else now
        self.worker.expire_timeouts()
        reclaimed = 0
        try:
            conn = self.conn.get()
            if now >= self.next_heartbeat:
                self.heartbeat(conn)
                self.next_heartbeat = now + self.settings.heartbeat_seconds
            reclaimed += store.reclaim_dead_workers(conn, self.worker.name, self.settings.restart_grace_seconds)
            if now >= self.next_lease_sweep:
                reclaimed += store.reclaim_expired_leases(conn, self.worker.name)
                self.next_lease_sweep = now + min(LEASE_SWEEP_SECONDS, self.settings.lease_seconds / 3)
            if now >= self.next_prune:
                pruned = runs_prune(conn, self.settings.retention_hours)
                pruned += runs_prune_to_budget(conn, int(self.settings.data_budget_mb * 1024 * 1024))
                self.next_prune = now + (0 if pruned >= PRUNE_BATCH else PRUNE_SECONDS)
                if pruned:
                    log.info("pruned %d finished run(s): older than %gh, or the oldest past DATA_BUDGET_MB",
                             pruned, self.settings.retention_hours)
        except StopRequested:
            return reclaimed
        except unavailable_errors as exc:
            self.conn.broken(exc)
        except Exception:  # noqa: BLE001 - the reaper must outlive any single failed pass
            log.exception("reaper pass failed; trying again next pass")
            self.conn.close()
        if reclaimed:
            log.info("reclaimed %d step(s)", reclaimed)
            self.worker.wake.set()
        return reclaimed

    def heartbeat(self, conn: object) -> None:
        """Renew our leases; an attempt whose lease is no longer ours is told to stop."""
        worker = self.worker
        with worker.lock:
            leases = [(f.step.id, f.step.attempt) for f in worker.in_flight.values() if not f.timed_out]
        held = store.step_heartbeat(conn, leases, self.settings.lease_seconds)  # type: ignore[arg-type]
        if worker.worker_id is not None:
            store.worker_touch(conn, worker.worker_id)  # type: ignore[arg-type]
        lost = {step_id for step_id, _ in leases} - held
        if lost:
            with worker.lock:
                for step_id in lost:
                    flight = worker.in_flight.get(step_id)
                    if flight:
                        flight.ctx.cancelled.set()
            log.warning("lease lost for step(s) %s: stopping work on them", sorted(lost))
