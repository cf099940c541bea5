"""Chaos in a real browser: a poison pill ends dead-lettered with Redrive offered; a page whose
socket the server drops catches up with no event missing or shown twice. (Kill on a busy worker is
in test_story.py, at both screen sizes.)"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Page, expect

from engine import store
from engine.store.runs import steps_by_id
from tests.e2e.test_dashboard import submit_from_form
from tests.helpers import make_run, step

pytestmark = pytest.mark.e2e


@contextmanager
def paused(workers: list) -> Iterator[None]:
    for worker in workers:
        worker.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            if worker.alive():
                worker.signal(signal.SIGCONT)


def busy_worker(conn, run_id: str) -> str:
    """A worker that holds a step of the run right now."""
    for worker in store.workers_list(conn):
        if any(str(s.run_id) == run_id for s in steps_by_id(conn, list(worker.running)).values()):
            return worker.name
    raise AssertionError("no worker is running a step of the run")


def test_a_poison_pill_ends_dead_lettered_with_redrive_offered(page: Page, stack):
    run_id = submit_from_form(page, stack, "poison_pill")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "failed", timeout=90_000)
    poison = page.locator("#steps tr[data-step='tool_call.poison']")
    expect(poison).to_have_attribute("data-status", "dead_letter")
    expect(poison.locator(".redrive-button")).to_be_visible()
    expect(poison).to_contain_text("3 reclaimed")
    for branch in ("tool_call.fetch_1", "tool_call.fetch_2", "llm_call.summarize"):
        expect(page.locator(f"#steps tr[data-step='{branch}']")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#steps tr[data-step='llm_call.after_poison']")).to_have_attribute("data-status", "blocked")
    page.goto(stack.server.url + "/dead-letters")
    dead = store.run_get(stack.conn, run_id).steps[0]
    entry = page.locator(f"#dead-letters [data-step-id='{dead.id}']")
    expect(entry).to_contain_text("worker crashed 3 times")
    expect(entry.locator(".redrive-button")).to_be_visible()


def test_a_page_whose_socket_the_server_drops_catches_up_without_gaps_or_duplicates(page: Page, stack):
    steps = [step(f"tool_call.s{i}", [f"tool_call.s{i - 1}"] if i else None, tool="sleep", seconds=0.5)
             for i in range(12)]
    status, created = stack.server.json("POST", "/runs", make_run(*steps, goal="a long chain"))
    assert status == 201
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws) if "/ws/pages/runs/" in ws.url else None)
    page.goto(stack.server.url + f"/runs/{created['runId']}")
    expect(page.locator("#event-log [data-type='step_succeeded']").nth(1)).to_be_attached(timeout=20_000)
    for pid in stack.server.gunicorn_workers():
        os.kill(pid, signal.SIGKILL)  # the web process dies; gunicorn starts a new one
    expect(page.locator("#live-status.on")).to_have_count(0, timeout=10_000)
    expect(page.locator("#live-status.on")).to_have_count(1, timeout=30_000)
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=60_000)
    shown = [int(i) for i in page.locator("#event-log li:not([data-type^='worker_'])").evaluate_all(
        "els => els.map(e => e.dataset.eventId)")]
    stored = [e.id for e in store.events_after(stack.conn, created["runId"])]
    assert len(shown) == len(set(shown)), "an event is shown twice"
    assert shown == stored, "an event is missing"
    assert len(sockets) >= 2, "the page did not reconnect"
