"""Random DAGs with random transient failures while a chaos thread kills (SIGKILL) and stops
(SIGTERM) workers at random and a supervisor restarts them. Afterwards every run is terminal, in the
state its steps dictate, and the invariant checker passes.

The DAGs and the workers' `failureRate` draws come from seeded generators (`CHAOS_SEED`, printed on
failure); `CHAOS_STEPS` sets how many steps in all (a few hundred by default; raise it for a soak)."""
from __future__ import annotations

import os
import random
import signal
from collections import Counter
from typing import Any

import pytest

from engine.submit import submit_run
from tests.chaos.support import BackgroundLoop, Supervisor, assert_invariants, run_events, wait_registered, wait_terminal
from tests.helpers import make_run, step

pytestmark = pytest.mark.chaos

CHAOS_STEPS = int(os.environ.get("CHAOS_STEPS", "300"))
CHAOS_SEED = int(os.environ.get("CHAOS_SEED", "20240607"))
TOOLS = ("fetch_data", "transform", "notify", "sleep")
# Enough attempts that transient failures and crashes together practically never exhaust a step:
# two injected failures plus eight more at a 20% failure rate is a chance of 2.6e-6.
ATTEMPTS = 10


def random_step(rng: random.Random, name: str, earlier: list[str]) -> dict[str, Any]:
    knobs: dict[str, Any] = {"tool": rng.choice(TOOLS)}
    if knobs["tool"] == "sleep":
        knobs["seconds"] = rng.choice((0.05, 0.2, 0.5))
    if rng.random() < 0.25:
        knobs["sleepSeconds"] = round(rng.uniform(0.05, 0.4), 2)
    if rng.random() < 0.25:
        knobs["failTimes"] = rng.randint(1, 2)
    if rng.random() < 0.2:
        knobs["failureRate"] = 0.2
    parents = rng.sample(earlier, rng.randint(0, min(3, len(earlier))))
    return step(name, parents, max_attempts=ATTEMPTS, backoff={"baseSeconds": 0.02, "maxSeconds": 0.3}, **knobs)


def random_run(rng: random.Random, index: int, size: int) -> tuple[dict[str, Any], str]:
    """A run of `size` steps and the status it must end in: every sixth run has a doomed step (it fails
    more often than it may be tried), so it must fail; the others must complete."""
    names = [f"tool_call.s{i}" for i in range(size)]
    steps = [random_step(rng, name, names[:i]) for i, name in enumerate(names)]
    doomed = index % 6 == 5
    if doomed:
        victim = rng.choice(steps)
        victim["input"]["failTimes"], victim["maxAttempts"] = 5, 2
    return make_run(*steps, goal=f"random run {index}"), "failed" if doomed else "completed"


def random_runs(rng: random.Random, total_steps: int) -> list[tuple[dict[str, Any], str]]:
    runs = []
    while total_steps > 0:
        size = min(total_steps, rng.randint(3, 14))
        runs.append(random_run(rng, len(runs), size))
        total_steps -= size
    return runs


class ChaosMonkey(BackgroundLoop):
    """Signals a random live worker every 0.3–1.2 s: SIGKILL, and every fourth time SIGTERM (a graceful
    stop that releases unfinished steps). The supervisor brings them back."""

    def __init__(self, supervisor: Supervisor, rng: random.Random) -> None:
        super().__init__("chaos")
        self.supervisor = supervisor
        self.rng = rng
        self.sent: Counter[str] = Counter()

    def _loop(self) -> None:
        # The waits pace the chaos; nothing is synchronised on them.
        while not self._stop.wait(self.rng.uniform(0.3, 1.2)):
            with self.supervisor.lock:
                alive = [p for p in self.supervisor.procs if p.alive()]
                if not alive:
                    continue
                signum = signal.SIGTERM if sum(self.sent.values()) % 4 == 3 else signal.SIGKILL
                self.rng.choice(alive).signal(signum)
                self.sent[signum.name] += 1


def test_random_dags_survive_random_worker_kills(conn, settings, spawn, capsys):
    rng = random.Random(CHAOS_SEED)
    runs = random_runs(rng, CHAOS_STEPS)
    # The workers draw their failureRate failures from CHAOS_SEED too (per worker name).
    procs = [spawn(f"w{i}", 4, CHAOS_SEED=CHAOS_SEED) for i in range(1, 4)]
    wait_registered(conn, *procs)
    with Supervisor(procs) as supervisor, ChaosMonkey(supervisor, random.Random(CHAOS_SEED + 1)) as monkey:
        expected = {str(submit_run(conn, body, settings)[0]): status for body, status in runs}
        statuses = wait_terminal(conn, expected, timeout=60 + CHAOS_STEPS * 0.5)

    seen = Counter(e.type for run_id in expected for e in run_events(conn, run_id))
    with capsys.disabled():
        print(f"\n  seed {CHAOS_SEED}: {len(runs)} runs, {CHAOS_STEPS} steps; signals {dict(monkey.sent)}, "
              f"restarts {sum(supervisor.restarts.values())}; reclaimed {seen['step_reclaimed']}, "
              f"discarded {seen['step_result_discarded']}, retries {seen['step_retry_scheduled']}, "
              f"dead-lettered {seen['step_dead_lettered']}")
    wrong = {r: (statuses[r], want) for r, want in expected.items() if statuses[r] != want}
    assert not wrong, f"seed {CHAOS_SEED}: runs not in the state their steps dictate (got, wanted): {wrong}"
    assert_invariants(conn, expected)
