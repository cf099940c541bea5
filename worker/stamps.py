"""Handler timing stamps for the benchmarks (`STEP_STAMPS_FILE`): when each handler started and
ended by this process's wall clock, written out when the worker stops. `python -m bench` reads
them to measure the hop of a chain — a parent handler's end to its child handler's start — with
the clock of the processes that run the handlers (one machine, one clock), not the database's."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from worker.inflight import InFlight


class StepStamps:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        self.rows: list[tuple[int, int, float, float]] = []

    def add(self, flight: InFlight, started: float, ended: float) -> None:
        with self.lock:
            self.rows.append((flight.step.id, flight.step.attempt, started, ended))

    def write(self) -> None:
        """One JSON line per handler run: {"step": id, "attempt": n, "start": s, "end": s}."""
        with self.lock:
            rows, self.rows = self.rows, []
        with self.path.open("a") as out:
            for step_id, attempt, started, ended in rows:
                out.write(json.dumps({"step": step_id, "attempt": attempt, "start": started, "end": ended}) + "\n")


def read_stamps(path: str | Path) -> dict[int, tuple[float, float]]:
    """Step id → (start, end) of its last attempt, from a stamps file (several workers may append)."""
    stamps: dict[int, tuple[int, float, float]] = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        if row["step"] not in stamps or stamps[row["step"]][0] < row["attempt"]:
            stamps[row["step"]] = (row["attempt"], row["start"], row["end"])
    return {step: (start, end) for step, (_, start, end) in stamps.items()}
