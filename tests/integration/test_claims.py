"""Claiming: many claimers racing over the same ready steps never claim one step twice."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

from engine import store
from engine.submit import submit_run
from tests.helpers import ROOT, make_run, step

STEPS = 300
CLAIM_SCRIPT = """
import json, sys
from engine import store
conn = store.connect(sys.argv[1])
claimed = []
while True:
    batch = store.step_claim(conn, sys.argv[2], 0, 7, 300)
    if not batch:
        break
    claimed += [s.id for s in batch]
print(json.dumps(claimed))
"""


def submit_many(conn, settings, runs: int = STEPS // 30) -> None:
    for r in range(runs):
        submit_run(conn, make_run(*[step(f"tool_call.s{i}", tool="fetch_data") for i in range(30)], goal=f"r{r}"),
                   settings)


def test_racing_threads_never_claim_a_step_twice(conn, db_url, settings):
    submit_many(conn, settings)
    claimed: list[list[int]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def claimer(index: int) -> None:
        with store.connect(db_url) as own:
            barrier.wait()
            while batch := store.step_claim(own, f"t{index}", 0, 5, 300):
                claimed[index].extend(s.id for s in batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    all_ids = [i for ids in claimed for i in ids]
    assert len(all_ids) == STEPS and len(set(all_ids)) == STEPS
    assert sum(1 for ids in claimed if ids) > 1, "the race needs more than one winner to mean anything"


def test_racing_processes_never_claim_a_step_twice(conn, db_url, settings):
    submit_many(conn, settings)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_SCRIPT, db_url, f"p{i}"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    claimed = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    all_ids = [i for ids in claimed for i in ids]
    assert len(all_ids) == STEPS and len(set(all_ids)) == STEPS
    started = conn.execute("SELECT count(*) AS n, count(DISTINCT step_id) AS d FROM audit_log "
                           "WHERE event = 'step_started'").fetchone()
    assert started["n"] == started["d"] == STEPS
    assert all(s["attempt"] == 1 for s in conn.execute("SELECT attempt FROM steps").fetchall())
