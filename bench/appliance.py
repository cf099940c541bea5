"""The appliance's processes on a fresh database: two workers and (optionally) the web app, as
supervisord starts them (`python -m worker --name worker-N`, `python -m app`), default settings."""
from __future__ import annotations

import http.client
import json
from typing import Any

from bench.processes import Process, WebApp, start_worker, wait_workers_registered
from bench.server import BenchServer

WORKER_NAMES = ["worker-1", "worker-2"]
# Submitting hundreds of runs from one address would trip the per-client limits meant for
# visitors; raising them (not disabling them) keeps the same code path: every check still runs.
LIMITS_RAISED = {"SUBMITS_PER_WINDOW": "1000000", "MAX_ACTIVE_RUNS": "1000000",
                 "MAX_ACTIVE_RUNS_PER_CLIENT": "1000000"}


class Appliance:
    """`with Appliance(server, "label") as appliance:` … `appliance.post_json("/runs", body)`."""

    def __init__(self, server: BenchServer, label: str, web: bool = True, workers: bool = True) -> None:
        self.server = server
        self.url = server.fresh_database(label)
        self.workers: list[Process] = []
        self.web: WebApp | None = None
        self._http: http.client.HTTPConnection | None = None
        try:
            if workers:
                self.workers = [start_worker(self.url, name) for name in WORKER_NAMES]
                wait_workers_registered(self.url, WORKER_NAMES, self.workers)
            if web:
                self.web = WebApp(self.url, LIMITS_RAISED)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Appliance:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        """POST over one kept-alive connection (reconnecting if the server closed it)."""
        assert self.web is not None
        payload = json.dumps(body).encode()
        for attempt in range(2):
            if self._http is None:
                self._http = http.client.HTTPConnection("127.0.0.1", self.web.port, timeout=30)
            try:
                self._http.request("POST", path, payload, {"Content-Type": "application/json"})
                response = self._http.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self._http.close()
                self._http = None
                if attempt:
                    raise
        try:
            return response.status, json.loads(data or b"null")
        except ValueError:
            return response.status, data.decode(errors="replace")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self.web is not None:
            self.web.stop()
        for worker in self.workers:
            worker.stop()
        self.server.drop(self.url)
