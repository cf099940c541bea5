"""Slot starvation (issue 13, point 5): one visitor's long sleeps cannot hold every worker slot;
another visitor's run starts at once. Real gunicorn, real workers, clients told apart by
CLIENT_IP_HEADER."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import store
from engine.model import StepStatus
from tests.chaos.support import assert_invariants, wait_registered, wait_terminal
from tests.helpers import make_run, step, wait_for
from tests.web.support import WebServer
from tests.web.support import submit_as as submit

CAP = 3


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[WebServer]:
    server = WebServer(db_url, tmp_path, CLIENT_IP_HEADER="X-Client").start()
    yield server
    server.stop()


def running_steps(conn, run_ids: list[str]) -> int:  # noqa: ANN001 - a psycopg connection
    return sum(s.status == StepStatus.RUNNING for r in run_ids for s in store.run_get(conn, r).steps)


def test_long_sleeps_of_one_client_leave_slots_for_another(web, conn, spawn):
    procs = [spawn(f"w{i}", 4, MAX_RUNNING_STEPS_PER_CLIENT=CAP) for i in (1, 2)]  # 8 slots in all
    wait_registered(conn, *procs)
    hog = [submit(web, make_run(*[step(f"tool_call.nap{i}", tool="sleep", seconds=120) for i in range(20)],
                                goal=f"hog {n}"), "hog") for n in range(2)]
    wait_for(lambda: running_steps(conn, hog) >= CAP, 20, "the hog's steps to start")
    visitor = submit(web, make_run(step("tool_call.a", tool="fetch_data"),
                                   step("tool_call.b", ["tool_call.a"], tool="transform"), goal="visitor"), "visitor")
    # Well before any of the hog's 120 s naps ends.
    assert wait_terminal(conn, [visitor], 20) == {visitor: "completed"}
    # Two workers claiming at once may each give the hog its cap; never more.
    assert running_steps(conn, hog) <= CAP * len(procs)
    for run_id in hog:
        assert web.json("POST", f"/api/runs/{run_id}/cancel", headers={"X-Client": "hog"})[0] == 200
    wait_for(lambda: running_steps(conn, hog) == 0, 20, "the hog's naps to be cancelled")
    assert_invariants(conn, [*hog, visitor])
