"""The Kill button through supervisord: with SUPERVISOR_SOCKET set, the web app asks supervisord
over its unix socket to SIGKILL the program named like the worker, and supervisord restarts it."""
from __future__ import annotations

import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.chaos import UnixSocketTransport
from engine import store
from tests.helpers import FAST_ENV, ROOT, wait_for
from tests.web.support import WebServer

PROGRAM = "sv-worker-1"
# Long enough that the second kill below surely lands while supervisord still counts the restarted
# worker as STARTING, even on a loaded machine (with 1 s, the two requests were sometimes further apart).
STARTSECS = 5


@pytest.fixture
def supervised_worker(db_url: str, tmp_path: Path) -> Iterator[Path]:
    socket_path = tmp_path / "supervisor.sock"
    environment = ",".join(f'{k}="{v}"' for k, v in {**FAST_ENV, "DATABASE_URL": db_url}.items())
    config = tmp_path / "supervisord.conf"
    config.write_text(f"""
[supervisord]
nodaemon=true
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
[unix_http_server]
file={socket_path}
chmod=0700
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:{PROGRAM}]
command={sys.executable} -m worker --name %(program_name)s
directory={ROOT}
environment={environment}
autorestart=true
startsecs={STARTSECS}
stdout_logfile={tmp_path}/worker.log
redirect_stderr=true
""")
    supervisord = Path(sys.executable).parent / "supervisord"
    proc = subprocess.Popen([str(supervisord), "-c", str(config)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield socket_path
    finally:
        proc.terminate()
        proc.wait(20)


def started_pids(conn) -> list[int]:
    return [e.detail["pid"] for e in store.events_recent(conn, 500)
            if e.type == "worker_started" and e.worker == PROGRAM]


def supervisor_state(socket_path: Path) -> str:
    proxy = xmlrpc.client.ServerProxy("http://supervisor", transport=UnixSocketTransport(str(socket_path)))
    try:
        return proxy.supervisor.getProcessInfo(PROGRAM)["statename"]
    except OSError:
        return "unreachable"


def test_kill_goes_through_supervisord_which_brings_the_worker_back(supervised_worker, db_url, conn, tmp_path):
    first_pid = wait_for(lambda: started_pids(conn), 30, "the supervised worker to start")[0]
    wait_for(lambda: supervisor_state(supervised_worker) == "RUNNING", 30, "supervisord to count it as running")
    web = WebServer(db_url, tmp_path, SUPERVISOR_SOCKET=str(supervised_worker)).start()
    try:
        status, body = web.json("POST", f"/api/workers/{PROGRAM}/kill")
        assert status == 202, body
        assert body["via"] == "supervisor" and body["pid"] == first_pid
        # While supervisord restarts it (startsecs not yet over), another kill would count as a
        # failed start — enough of those make the program FATAL — so it is refused.
        status, body = web.json("POST", f"/api/workers/{PROGRAM}/kill")
        assert status in (404, 409), body
        pids = wait_for(lambda: (p := started_pids(conn)) and len(p) == 2 and p, 30, "supervisord to restart it")
        assert pids[1] != first_pid
        wait_for(lambda: any(e.type == "worker_lost" and e.worker == PROGRAM
                             for e in store.events_recent(conn, 500)), 10, "the old incarnation seen as lost")
    finally:
        web.stop()
