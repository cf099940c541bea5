"""The watcher: event-driven crash detection. It waits, on a connection of its own, for the
liveness lock of one other worker (see `engine.store.watch`); Postgres wakes it the moment that
worker's session ends, and it reclaims the dead worker's steps at once instead of at the reaper's
next pass. The reaper keeps polling as before (the fallback for a worker nobody watches yet) and
keeps the lease sweep for a worker that is frozen but alive. Idle, the watcher costs one blocked
statement (one round trip) every `WATCH_SECONDS`."""
from __future__ import annotations

import logging

from engine import store
from engine.errors import StoreUnavailable
from engine.store.watch import worker_watch_neighbour
from worker.connections import StopRequested
from worker.maintenance import MaintenanceLoop

log = logging.getLogger("worker")

# How long one wait lasts before the watcher looks again at whom to watch (a worker that joined
# meanwhile may have become its neighbour). Detection itself does not depend on it.
WATCH_SECONDS = 2.0


class Watcher(MaintenanceLoop):
    def cycle(self) -> float:
        return self.run_once()

    def run_once(self, wait_seconds: float = WATCH_SECONDS) -> float:
        """Watch one worker until it dies or `wait_seconds` pass; reclaim its steps if it died.
        Returns how long to pause before the next watch (0: go on at once)."""
        me = self.worker_id()
        if me is None:
            return self.settings.reaper_interval_seconds
        try:
            conn = self.conn.get()
            watched = worker_watch_neighbour(conn, me, wait_seconds)
            if watched.alone:  # look again soon: a worker that joins should be watched at once
                return self.settings.reaper_interval_seconds
            if not watched.died:
                return 0.0  # alive
            reclaimed = store.reclaim_dead_workers(conn, self.name, self.settings.restart_grace_seconds,
                                                   self.settings.restart_relock_seconds)
        except StopRequested:
            return 0.0
        except StoreUnavailable as exc:
            self.conn.broken(exc)
            return 0.0  # get() waits out the outage with its backoff
        except Exception:  # noqa: BLE001 - the watcher must outlive any single failed pass
            log.exception("watcher pass failed; trying again")
            self.conn.close()
            return self.settings.reaper_interval_seconds
        if reclaimed:
            log.info("watcher: a watched worker died; reclaimed %d step(s)", reclaimed)
            self.wake()
            return 0.0
        # The lock was free but nothing was reclaimed: the worker stopped (it drops out of the
        # ring), or Postgres restarted and it has not re-taken its lock yet (restart grace). Do not
        # spin on a free lock meanwhile.
        return self.settings.reaper_interval_seconds
