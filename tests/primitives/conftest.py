"""An in-process worker whose tools can be test handlers, so a test can see what a handler saw
(`ctx.cancelled`) and count how often each was called. It runs the real claim loop, recorder and
reaper threads against the real database; only the process is shared with the test."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from engine.config import Settings
from engine.store import connect
from engine.store.tools import tools_offer
from engine.tools import StepContext
from engine.tools.builtin import TOOLS
from engine.tools.registry import ToolDefaults
from worker.worker import Worker


class ToolCalls:
    """Registered test tools and the calls each step name made to them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
        self.monkeypatch = monkeypatch
        self.database_url = database_url
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def register(self, name: str, handler: Callable[[StepContext], dict]) -> None:
        def counted(ctx: StepContext) -> dict:
            with self.lock:
                self.calls[ctx.step_name] += 1
            return handler(ctx)
        self.monkeypatch.setitem(TOOLS, name, counted)
        with connect(self.database_url) as conn:  # submission accepts only tools some worker offered
            tools_offer(conn, {name: ToolDefaults()})


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch, db_url: str) -> ToolCalls:
    return ToolCalls(monkeypatch, db_url)


@pytest.fixture
def inprocess_worker(settings: Settings) -> Iterator[Callable[[], Worker]]:
    started: list[tuple[Worker, threading.Thread]] = []

    def start(concurrency: int = 4) -> Worker:
        worker = Worker(settings, f"inproc-{len(started) + 1}", concurrency)
        thread = threading.Thread(target=worker.run_forever, name=worker.name, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker
    yield start
    for worker, thread in started:
        worker.stopping.set()
        worker.wake.set()
        thread.join(30)
