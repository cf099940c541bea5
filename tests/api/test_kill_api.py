"""`POST /api/workers/<name>/kill` over HTTP: a worker on this host is SIGKILLed and its step is
reclaimed by the other worker; the kill is audited; unknown and remote workers are refused."""
from __future__ import annotations

import socket

from engine import store
from engine.model import WorkerInfo
from engine.store.runs import steps_by_id
from tests.helpers import make_run, step, wait_for


def running_worker(conn, run_id: str) -> WorkerInfo | None:
    for worker in store.workers_list(conn):
        runs = {str(s.run_id) for s in steps_by_id(conn, list(worker.running)).values()}
        if run_id in runs:
            return worker
    return None


def test_killing_the_worker_running_a_step_gets_the_step_reclaimed_and_audited(server, module_workers, module_conn):
    _, created = server.json("POST", "/runs", make_run(step("tool_call.nap", tool="sleep", seconds=1.5, max_attempts=3)))
    run_id = created["runId"]
    victim = wait_for(lambda: running_worker(module_conn, run_id), 20, "a worker running the step")
    status, body = server.json("POST", f"/api/workers/{victim.name}/kill")
    assert status == 202 and body == {"worker": victim.name, "pid": victim.pid, "via": "signal",
                                      "status": "kill requested"}
    wait_for(lambda: store.run_get(module_conn, run_id).status == "completed", 30, "the run to complete")
    events = [e.type for e in store.events_after(module_conn, run_id)]
    assert "step_reclaimed" in events
    kills = [e for e in store.events_recent(module_conn, 200) if e.type == "worker_kill_requested"]
    assert kills[-1].worker == victim.name and kills[-1].detail == {"pid": victim.pid, "via": "signal"}
    lost = wait_for(lambda: [e for e in store.events_recent(module_conn, 200)
                             if e.type == "worker_lost" and e.worker == victim.name], 10, "worker_lost")
    assert lost


def test_killing_an_unknown_worker_is_404(server):
    status, body = server.json("POST", "/api/workers/nobody/kill")
    assert status == 404 and "no live worker" in body["error"]


def test_a_worker_on_another_host_cannot_be_killed_from_here(server, module_db_url):
    with store.connect(module_db_url) as liveness:  # a live worker elsewhere: it holds its lock
        store.worker_register(liveness, "far-away", "elsewhere-" + socket.gethostname(), 4242)
        status, body = server.json("POST", "/api/workers/far-away/kill")
    assert status == 409 and "can only kill workers on its own host" in body["error"]


def test_a_worker_whose_process_is_gone_is_not_signalled(server, module_db_url):
    with store.connect(module_db_url) as liveness:
        store.worker_register(liveness, "ghost", socket.gethostname(), 4_000_000)  # no such pid
        status, body = server.json("POST", "/api/workers/ghost/kill")
    assert status == 409
