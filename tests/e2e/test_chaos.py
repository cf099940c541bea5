"""Chaos in a real browser: Kill the worker running a flaky step and watch the step get reclaimed
and the run complete; a poison pill ends dead-lettered with Redrive offered; a page whose socket
the server drops catches up with no event missing or shown twice."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Page, expect

from engine import store
from engine.store.runs import steps_by_id
from tests.e2e.conftest import LAPTOP, PHONE
from tests.e2e.test_dashboard import submit_from_form
from tests.helpers import make_run, step

pytestmark = pytest.mark.e2e


def test_killing_the_worker_running_a_flaky_step_gets_it_reclaimed_and_the_run_completes(
        page: Page, stack, screenshots):
    run_id = submit_from_form(page, stack, "flaky", goal="Survive a killed worker")
    expect(page.locator("#workers .worker:has(.pill)").first).to_be_visible(timeout=20_000)
    with paused(stack.workers):  # so the worker chosen below is still running its step when killed
        busy = busy_worker(stack.conn, run_id)
        page.locator(f"#workers .worker[data-worker='{busy}'] .kill-button").click()
        page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator(".flash-ok")).to_contain_text("Killed worker-")
    expect(page.locator("#event-log [data-type='step_reclaimed']").first).to_be_visible(timeout=20_000)
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=90_000)
    expect(page.locator("#timeline [data-marker='reclaimed']").first).to_be_visible()
    expect(page.locator("#timeline [data-marker='kill']").first).to_be_visible()
    events = [e.type for e in store.events_after(stack.conn, run_id)]
    assert "step_reclaimed" in events and events[-1] == "run_completed"
    page.screenshot(path=str(screenshots / "chaos-run-laptop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(screenshots / "chaos-run-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    page.set_viewport_size(LAPTOP)


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
    expect(page.locator("#steps tr[data-step='llm_call.after_poison']")).to_have_attribute("data-status", "pending")
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
    shown = [int(i) for i in page.locator("#event-log li").evaluate_all("els => els.map(e => e.dataset.eventId)")]
    stored = [e.id for e in store.events_after(stack.conn, created["runId"])]
    assert len(shown) == len(set(shown)), "an event is shown twice"
    assert shown == stored, "an event is missing"
    assert len(sockets) >= 2, "the page did not reconnect"
