"""The worker's maintenance loop: renews the leases of its own steps (and stops work on any that
were taken away), records timeouts, and reaps other workers' steps — at once when a worker's
liveness lock is free (it died), or when a lease expired (it is stuck or cut off).

Built from the in-flight table, its own connection and the settings; it tells the claim loop about
reclaimed steps through `wake`, and never sees the `Worker` itself."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from engine import store
from engine.config import Settings
from engine.errors import StoreUnavailable
from engine.store.maintenance import PRUNE_BATCH, runs_prune, runs_prune_to_budget
from engine.store.timers import expire_timers
from worker.connections import ReconnectingConnection, StopRequested
from worker.inflight import InFlightTable
from worker.maintenance import MaintenanceLoop

log = logging.getLogger("worker")

LEASE_SWEEP_SECONDS = 1.0  # expired leases are rarer than deaths; no need to look as often
PRUNE_SECONDS = 60.0  # retention is counted in hours; once a minute is plenty


class Reaper(MaintenanceLoop):
    def __init__(self, table: InFlightTable, conn: ReconnectingConnection, settings: Settings, name: str,
                 worker_id: Callable[[], int | None], wake: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(conn, settings, name, worker_id, wake, stop)
        self.table = table
        self.next_heartbeat = 0.0
        self.next_lease_sweep = 0.0
        self.next_prune = 0.0

    def cycle(self) -> float:
        self.run_once()
        return self.settings.reaper_interval_seconds

    def run_once(self, now: float | None = None) -> int:
        """One pass: timeouts, heartbeats when due, dead workers, expired leases when due.
        Returns the number of steps reclaimed."""
        now = time.monotonic() if now is None else now
        if self.table.expire():
            self.wake()  # their slots are free now
        reclaimed = 0
        try:
            conn = self.conn.get()
            if now >= self.next_heartbeat:
                self.heartbeat(conn)
                self.next_heartbeat = now + self.settings.heartbeat_seconds
            reclaimed += store.reclaim_dead_workers(conn, self.name, self.settings.restart_grace_seconds,
                                                    self.settings.restart_relock_seconds)
            if now >= self.next_lease_sweep:
                reclaimed += store.reclaim_expired_leases(conn, self.name)
                expire_timers(conn, self.name)
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
        except StoreUnavailable as exc:
            self.conn.broken(exc)
        except Exception:  # noqa: BLE001 - the reaper must outlive any single failed pass
            log.exception("reaper pass failed; trying again next pass")
            self.conn.close()
        if reclaimed:
            log.info("reclaimed %d step(s)", reclaimed)
            self.wake()
        return reclaimed

    def heartbeat(self, conn: psycopg.Connection) -> list[int]:
        """Renew our leases; an attempt whose lease was taken away is told to stop. Returns those."""
        leases = self.table.leases()
        held = store.step_heartbeat(conn, leases, self.settings.lease_seconds)
        worker_id = self.worker_id()
        if worker_id is not None:
            store.worker_touch(conn, worker_id)
        lost = self.table.lost(leases, held)
        if lost:
            log.warning("lease lost for step(s) %s: stopping work on them", lost)
        return lost
