"""The reclaim benchmark: how fast a step comes back after its worker is killed with SIGKILL.

Two workers run as shipped (every setting at its default). Each repeat submits a run of one long
step, kills the worker that claimed it at a random moment of the step, and reads two delays from the
audit log: kill → `step_reclaimed` (crash detection: the other worker's reaper finds the dead worker's
liveness lock free) and kill → `step_started` of the next attempt (the step running again). The
killed worker is restarted before the next repeat, as supervisord would. Target: median under 1 s.

`run_recovery_bench(url)` is what `python -m bench` calls; `python -m bench.recovery [REPEATS]` runs
it alone against a throwaway Postgres cluster.
"""
from __future__ import annotations

import os
import random
import signal
import statistics
import sys
import time
from typing import Any
from uuid import UUID

import psycopg

from bench.processes import Process, start_worker, wait_for
from engine import store
from engine.config import Settings
from engine.model import Event
from engine.submit import submit_run

WORKER_NAMES = ("recovery-1", "recovery-2")
STEP_SECONDS = 3.0            # long enough that every kill lands mid-step
KILL_AFTER_MAX_SECONDS = 0.5  # the kill lands at a random point of the step (and of the reaper's cycle)
TARGET_MEDIAN_SECONDS = 1.0
EVENT_POLL_SECONDS = 0.005
STEP_BODY = {"goal": "recovery benchmark",
             "steps": [{"name": "tool_call.long", "input": {"tool": "sleep", "seconds": STEP_SECONDS},
                        "maxAttempts": 3}]}


def run_recovery_bench(database_url: str, repeats: int = 20, seed: int = 1) -> dict[str, Any]:
    """Kill a worker mid-step `repeats` times; returns the median and max of both delays in seconds,
    and every sample. `database_url` must point at a migrated database."""
    bench = _RecoveryBench(database_url, random.Random(seed))
    try:
        samples = [bench.kill_one() for _ in range(repeats)]
    finally:
        bench.close()
    recovery = [s["recovery_s"] for s in samples]
    restart = [s["restart_s"] for s in samples]
    return {"recovery_median_s": statistics.median(recovery), "recovery_max_s": max(recovery),
            "restart_median_s": statistics.median(restart), "restart_max_s": max(restart),
            "samples": samples}


class _RecoveryBench:
    def __init__(self, database_url: str, rng: random.Random) -> None:
        self.database_url = database_url
        self.rng = rng
        self.settings = Settings.from_env({"DATABASE_URL": database_url})
        self.conn = store.connect(database_url, application_name="bench-recovery")
        self.workers: dict[str, Process] = {name: start_worker(database_url, name) for name in WORKER_NAMES}
        self._wait_registered()
        self.clock_offset = _database_clock_offset(self.conn)

    def kill_one(self) -> dict[str, Any]:
        """One repeat: submit, kill the claimer mid-step, time the reclaim and the restart."""
        run_id, _ = submit_run(self.conn, STEP_BODY, self.settings)
        started = self._wait_event(run_id, "step_started", attempt=1)
        victim = self.workers[started.worker or ""]
        time.sleep(self.rng.uniform(0, KILL_AFTER_MAX_SECONDS))  # pacing the benchmark, not synchronising
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time() + self.clock_offset  # on the database's clock, like the events
        victim.proc.wait(10)
        reclaimed = self._wait_event(run_id, "step_reclaimed", attempt=1)
        restarted = self._wait_event(run_id, "step_started", attempt=2)
        store.run_cancel(self.conn, run_id, by="bench-recovery")  # the survivor need not sleep it out
        victim.stop()
        self.workers[victim.name] = start_worker(self.database_url, victim.name)
        self._wait_registered()
        return {"victim": victim.name, "reclaimed_by": (reclaimed.detail or {}).get("reclaimedBy"),
                "restarted_on": restarted.worker, "recovery_s": reclaimed.ts.timestamp() - killed_at,
                "restart_s": restarted.ts.timestamp() - killed_at}

    def _wait_event(self, run_id: UUID, kind: str, attempt: int) -> Event:
        found: list[Event] = []

        def seen() -> bool:
            found[:] = [e for e in store.events_after(self.conn, run_id) if e.type == kind and e.attempt == attempt]
            return bool(found)
        wait_for(seen, 30, f"{kind} of attempt {attempt} in run {run_id}", interval=EVENT_POLL_SECONDS)
        return found[0]

    def _wait_registered(self) -> None:
        """Every worker process has registered its current incarnation (and holds its liveness lock)."""
        def registered() -> bool:
            rows = {w.name: w for w in store.workers_list(self.conn)}
            for name, proc in self.workers.items():
                if not proc.alive():
                    raise RuntimeError(f"worker {name} exited early:\n{proc.output_tail()}")
            return all(name in rows and rows[name].pid == proc.pid for name, proc in self.workers.items())
        wait_for(registered, 30, f"workers {sorted(self.workers)} to register", interval=0.02)

    def close(self) -> None:
        for proc in self.workers.values():
            proc.stop()
        self.conn.close()


def _database_clock_offset(conn: psycopg.Connection) -> float:
    """Database clock minus ours, so a kill timed here compares with `now()` in the audit log even
    when Postgres runs on another machine."""
    before = time.time()
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8 AS now").fetchone()
    after = time.time()
    return row["now"] - (before + after) / 2


def format_result(result: dict[str, Any]) -> str:
    verdict = "met" if result["recovery_median_s"] < TARGET_MEDIAN_SECONDS else "MISSED"
    lines = [f"recovery after kill -9 ({len(result['samples'])} kills, every setting at its default):",
             f"  kill -> step_reclaimed        median {result['recovery_median_s'] * 1000:7.1f} ms   "
             f"max {result['recovery_max_s'] * 1000:7.1f} ms   (target: median < {TARGET_MEDIAN_SECONDS:g} s, {verdict})",
             f"  kill -> step restarted        median {result['restart_median_s'] * 1000:7.1f} ms   "
             f"max {result['restart_max_s'] * 1000:7.1f} ms"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from engine.migrate import migrate
    from engine.pgcluster import PgCluster

    repeats = int(argv[0]) if argv else 20
    cluster = PgCluster().init().start()
    try:
        migrate(cluster.url())
        print(format_result(run_recovery_bench(cluster.url(), repeats)))
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
