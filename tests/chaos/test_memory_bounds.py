"""Memory (issue 13, point 7): what a step may receive from its parents and return is bounded in
bytes, with a clear error past the bound, so no accepted run can blow up a worker. Real worker
processes; their peak resident memory (VmHWM) is printed and checked against the ceiling stated
in the README."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import store
from engine.model import StepStatus
from engine.submit import submit_run
from tests.chaos.support import assert_invariants, wait_registered, wait_terminal
from tests.helpers import make_run, step

pytestmark = pytest.mark.chaos

WORKER_PEAK_RSS_CEILING_MB = 200  # README: memory


def doubling_ladder(levels: int, fan: int) -> dict:
    """The issue's probe: each level merges both steps of the level before (twice the items), and the
    last level fans into `fan` transform steps."""
    steps = [step("tool_call.f", tool="fetch_data", count=50)]
    previous = ["tool_call.f"]
    for level in range(1, levels + 1):
        names = [f"tool_call.a{level}", f"tool_call.b{level}"]
        steps += [step(name, previous, tool="transform") for name in names]
        previous = names
    steps += [step(f"tool_call.fan{i}", previous, tool="transform") for i in range(fan)]
    return make_run(*steps, goal=f"doubling ladder of {levels} levels, fan of {fan}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_step_whose_parents_grew_too_big_fails_with_a_clear_error(conn, settings, spawn):
    procs = [spawn("w1", 32)]
    wait_registered(conn, *procs)
    run_id, _ = submit_run(conn, doubling_ladder(9, 3), settings)
    assert wait_terminal(conn, [run_id], 60) == {str(run_id): "failed"}
    dead = [s for s in store.run_get(conn, run_id).steps if s.status == StepStatus.DEAD_LETTER]
    assert dead and all("more than MAX_PARENT_BYTES (262144)" in s.error for s in dead), dead
    assert all(s.attempt == 1 for s in dead)  # permanent: retrying cannot make them smaller
    assert_invariants(conn, [run_id])


def test_the_heaviest_accepted_run_keeps_a_worker_under_its_ceiling(conn, settings, spawn, capsys):
    procs = [spawn("w1", 32)]
    wait_registered(conn, *procs)
    baseline = peak_rss_mb(procs[0].pid)
    # Six levels: 224 KB of parents per fan step, just under the limit, in 32 slots at once.
    run_id, _ = submit_run(conn, doubling_ladder(6, 32), settings)
    assert wait_terminal(conn, [run_id], 120) == {str(run_id): "completed"}
    peak = peak_rss_mb(procs[0].pid)
    with capsys.disabled():
        print(f"\n[memory] worker peak RSS {peak:.0f} MB (idle {baseline:.0f} MB) running 32 steps of "
              f"~224 KB parents each")
    assert peak < WORKER_PEAK_RSS_CEILING_MB
    assert_invariants(conn, [run_id])
