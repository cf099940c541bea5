"""DBOS Transact 3.4 as a peer, at its defaults: durable workflows whose steps run in the calling
process, one checkpoint (a committed row in its system database) per step.

Two figures, both from one `python -m bench.peers.with_dbos` process on the bench's server:
- per-step overhead: a workflow of 20 no-op `@DBOS.step()`s, run one at a time; its wall time
  (call → result, the workflow's own start and end records included) divided by 20. That is the
  peer of our chain hop: what it costs to go from one finished step to the next, durably.
- queue throughput: `jobs` no-op workflows enqueued on a queue registered with every option at
  its default (polling every second), processed by the same process; jobs / (first workflow
  started → last workflow's final update), from its own `workflow_status` timestamps.
"""
from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time

from bench.figures import Unavailable
from bench.processes import ROOT

CHAIN_STEPS = 20
APP_NAME = "dae-bench-dbos"


def run_dbos_peer(url: str, workflows: int, jobs: int, timeout: float = 600.0) -> dict[str, float]:
    """Run the DBOS measurement in its own process (DBOS is a process-wide singleton with its own
    threads); returns {"dbos_step_ms", "dbos_queue_jobs_per_s"}."""
    try:
        import dbos  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"{exc}: pip install -r requirements-bench.txt") from None
    done = subprocess.run([sys.executable, "-m", "bench.peers.with_dbos", url, str(workflows), str(jobs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"DBOS peer failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(url: str, workflows: int, jobs: int) -> dict[str, float]:
    from dbos import DBOS

    DBOS(config={"name": APP_NAME, "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step()
    def noop_step(i: int) -> int:
        return i

    @DBOS.workflow()
    def chain() -> int:
        for i in range(CHAIN_STEPS):
            noop_step(i)
        return CHAIN_STEPS

    @DBOS.workflow()
    def job(i: int) -> int:
        return i

    DBOS.launch()
    try:
        chain()  # warm-up: schema, pool, first-call costs
        per_step = []
        for _ in range(workflows):
            started = time.perf_counter()
            chain()
            per_step.append((time.perf_counter() - started) * 1000 / CHAIN_STEPS)
        queue = DBOS.register_queue("bench")
        handles = [queue.enqueue(job, i) for i in range(jobs)]
        for handle in handles:
            handle.get_result()
        rate = _queue_rate(url, [h.get_workflow_id() for h in handles])
    finally:
        DBOS.destroy()
    return {"dbos_step_ms": statistics.median(per_step), "dbos_queue_jobs_per_s": rate}


def _queue_rate(url: str, workflow_ids: list[str]) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        first, last, count = conn.execute(
            "SELECT min(started_at_epoch_ms), max(updated_at), count(*) FROM dbos.workflow_status "
            "WHERE workflow_uuid = ANY(%s) AND status = 'SUCCESS'", (workflow_ids,)).fetchone()
    if not count or last <= first:
        raise RuntimeError(f"DBOS queue: {count} of {len(workflow_ids)} workflows succeeded")
    return count / ((last - first) / 1000.0)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
