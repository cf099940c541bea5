"""The shape of the outside soak of issue 17, small: random DAGs while workers are killed (SIGKILL),
stopped (SIGTERM), frozen past their lease (SIGSTOP) and Postgres crashes (`pg_ctl restart -m
immediate`). Every run ends in the state its steps dictate and `engine verify` — with its check that
audit times agree with audit order for dependent events — passes."""
from __future__ import annotations

import os
import random
import signal
from collections import Counter

import pytest

from engine import store
from engine.errors import StoreUnavailable
from engine.pgcluster import PgCluster
from engine.store import connect
from engine.submit import submit_run
from tests.chaos.support import BackgroundLoop, Supervisor, assert_invariants, wait_registered
from tests.chaos.test_randomised import ChaosMonkey, random_runs
from tests.helpers import FAST_ENV, wait_for

pytestmark = pytest.mark.chaos

SOAK_STEPS = int(os.environ.get("SOAK_STEPS", "400"))
SOAK_SEED = int(os.environ.get("CHAOS_SEED", "20261129"))


class Infrastructure(BackgroundLoop):
    """Soon after the start and then every 1-2 s, alternately: crash Postgres, or freeze a random
    worker for longer than a lease."""

    def __init__(self, pg: PgCluster, supervisor: Supervisor, rng: random.Random, rounds: int = 4) -> None:
        super().__init__("infrastructure")
        self.pg = pg
        self.supervisor = supervisor
        self.rng = rng
        self.rounds = rounds
        self.done: Counter[str] = Counter()

    def _loop(self) -> None:
        frozen_for = float(FAST_ENV["LEASE_SECONDS"]) + 1
        # The waits pace the chaos; nothing is synchronised on them.
        for round_ in range(self.rounds):
            if self._stop.wait(self.rng.uniform(0.5, 1) if round_ == 0 else self.rng.uniform(1, 2)):
                return
            if round_ % 2 == 0:
                self.pg.restart(mode="immediate")
                self.done["postgres crashes"] += 1
                continue
            with self.supervisor.lock:
                alive = [p for p in self.supervisor.procs if p.alive()]
                victim = self.rng.choice(alive) if alive else None
                if victim:
                    victim.signal(signal.SIGSTOP)
            if victim:
                self._stop.wait(frozen_for)
                if victim.alive():
                    victim.signal(signal.SIGCONT)
                self.done["freezes past the lease"] += 1


def _unfinished(db_url: str, run_ids: set[str]) -> set[str] | None:
    """Runs still running, read on a fresh connection (Postgres may have just crashed); None if
    the database cannot answer right now."""
    try:
        with connect(db_url) as conn:
            return run_ids & set(store.run_ids(conn, status="running"))
    except StoreUnavailable:
        return None


def test_random_dags_survive_kills_stops_freezes_and_postgres_crashes(pg: PgCluster, db_url: str, settings,
                                                                      spawn, capsys) -> None:
    rng = random.Random(SOAK_SEED)
    runs = random_runs(rng, SOAK_STEPS)
    procs = [spawn(f"w{i}", 4, RESTART_GRACE_SECONDS="10") for i in range(1, 4)]
    with connect(db_url) as conn:
        wait_registered(conn, *procs)
        expected = {str(submit_run(conn, body, settings)[0]): status for body, status in runs}
    with (Supervisor(procs) as supervisor, ChaosMonkey(supervisor, random.Random(SOAK_SEED + 1)) as monkey,
          Infrastructure(pg, supervisor, random.Random(SOAK_SEED + 2)) as infrastructure):
        wait_for(lambda: _unfinished(db_url, set(expected)) == set(), 90 + SOAK_STEPS * 0.5,
                 f"{len(expected)} run(s) to finish", interval=0.2)

    with connect(db_url) as conn:
        statuses = {r: store.run_get(conn, r).status for r in expected}
        lost = conn.execute("SELECT count(*) AS n FROM audit_log WHERE event = 'worker_lost'").fetchone()["n"]
        with capsys.disabled():
            print(f"\n  seed {SOAK_SEED}: {len(runs)} runs, {SOAK_STEPS} steps; signals {dict(monkey.sent)}, "
                  f"{dict(infrastructure.done)}, worker restarts {sum(supervisor.restarts.values())}, "
                  f"worker_lost {lost}")
        assert infrastructure.done["postgres crashes"] and infrastructure.done["freezes past the lease"], \
            "the runs finished before the infrastructure's faults: raise SOAK_STEPS"
        wrong = {r: (statuses[r], want) for r, want in expected.items() if statuses[r] != want}
        assert not wrong, f"seed {SOAK_SEED}: runs not in the state their steps dictate (got, wanted): {wrong}"
        assert_invariants(conn, expected)
