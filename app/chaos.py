"""The Kill-worker button (chaos): SIGKILL a worker process so a visitor can watch its steps get
reclaimed. In the appliance it goes through supervisord's XML-RPC unix socket (which also restarts
the worker); elsewhere it signals the worker's pid if the worker runs on this host; otherwise it
answers 409. Every kill is rate-limited and written to the audit log."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import xmlrpc.client
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, Response, abort, flash, jsonify, redirect, request, url_for

from app.filters import clock
from app.pages import local_target
from app.security import json_api, rate_limit
from app.state import db, state
from engine.errors import Conflict, NotFound
from engine.store.chaos import worker_kill_record, worker_kill_target

bp = Blueprint("chaos", __name__)

SUPERVISOR_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Kill:
    worker: str
    pid: int | None
    via: str  # "supervisor" or "signal"


@bp.post("/api/workers/<name>/kill")
@json_api
def kill_api(name: str) -> tuple[Response, int]:
    kill = request_kill(name)
    return jsonify({"worker": kill.worker, "pid": kill.pid, "via": kill.via, "status": "kill requested"}), 202


@bp.post("/workers/<name>/kill")
def kill_form(name: str) -> Response:
    try:
        kill = request_kill(name)
        flash(f"Killed {kill.worker} at {clock(datetime.now(UTC))} (pid {kill.pid}, via {kill.via}): "
              "watch its steps get reclaimed and retried.", "ok")
    except (NotFound, Conflict) as exc:
        flash(str(exc), "error")
    return redirect(local_target(request.form.get("next")) or url_for("pages.dashboard"), 303)


def request_kill(name: str) -> Kill:
    if not state().web.chaos_enabled:
        abort(404)
    rate_limit("kill", state().web.kills_per_window)
    with db() as conn:
        target = worker_kill_target(conn, name)
        if target is None:
            raise NotFound(f"no live worker called {name!r}")
        kill = _kill(name, target["host"], target["pid"])
        worker_kill_record(conn, name, kill.pid, kill.via)
    return kill


def _kill(name: str, host: str, pid: int) -> Kill:
    socket_path = state().web.supervisor_socket
    if socket_path:
        return Kill(name, supervisor_kill(socket_path, name), "supervisor")
    if host != socket.gethostname():
        raise Conflict(f"{name} runs on {host}; this web app can only kill workers on its own host "
                       "(or through supervisord)")
    if not _is_worker_process(pid, name):
        raise Conflict(f"pid {pid} is not {name}'s worker process any more")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise Conflict(f"{name} (pid {pid}) is no longer running") from None
    except PermissionError:
        raise Conflict(f"not allowed to signal {name} (pid {pid})") from None
    return Kill(name, pid, "signal")


def _is_worker_process(pid: int, name: str) -> bool:
    """Guard against a recycled pid: the process must be a `worker` started with this name."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return True  # no procfs to check with; the liveness lock already vouched for the process
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    # Started as `python -m worker --name NAME`, or with the name in $WORKER_NAME (no --name).
    return b"worker" in args and (name.encode() in args or b"--name" not in args)


def supervisor_kill(socket_path: str, program: str) -> int | None:
    """SIGKILL a supervisord program (named like the worker); returns the pid it had."""
    proxy = xmlrpc.client.ServerProxy("http://supervisor", transport=UnixSocketTransport(socket_path))
    try:
        info = proxy.supervisor.getProcessInfo(program)
        # Only a program supervisord counts as RUNNING (up for its startsecs): killing one that is
        # still starting counts as a failed start, and a few in a row would make it FATAL.
        if info.get("statename") != "RUNNING":
            raise Conflict(f"{program} is {str(info.get('statename', 'not running')).lower()}; "
                           "wait until it is running again")
        pid = info.get("pid") or None
        proxy.supervisor.signalProcess(program, "KILL")
    except xmlrpc.client.Fault as fault:
        raise Conflict(f"supervisord could not kill {program}: {fault.faultString}") from None
    except OSError as exc:
        raise Conflict(f"supervisord is not reachable ({type(exc).__name__})") from None
    return pid


class UnixSocketConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=SUPERVISOR_TIMEOUT_SECONDS)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(SUPERVISOR_TIMEOUT_SECONDS)
        sock.connect(self.path)
        self.sock = sock


class UnixSocketTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix control socket (never a TCP port)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return UnixSocketConnection(self.path)
