"""What the worker's maintenance loops (`worker.reaper`, `worker.watcher`) share: their wiring — a
connection of their own, the settings, the worker's name, a getter of its current incarnation id,
`wake` to tell the claim loop that steps came back, and the shutdown event — and the loop that runs
their passes until shutdown. Neither loop sees the `Worker` itself."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine.config import Settings
from worker.connections import ReconnectingConnection


@dataclass(eq=False)  # eq=False: compared and hashed by identity, like any other loop object
class MaintenanceLoop:
    conn: ReconnectingConnection
    settings: Settings
    name: str
    worker_id: Callable[[], int | None]
    wake: Callable[[], None]
    stop: threading.Event

    def loop(self) -> None:
        """Pass after pass until shutdown, then close the connection."""
        while not self.stop.is_set():
            pause = self.cycle()
            if pause:
                self.stop.wait(pause)
        self.conn.close()

    def cycle(self) -> float:
        """One pass; returns how long to pause before the next (0: go on at once)."""
        raise NotImplementedError
