"""The 60-second story of a first-time visitor, on a laptop (1366×900) and a phone (390×844): the
guide on the dashboard; Kill on the highlighted busy worker, and the reclaim shown on the run page;
a dead-lettered step redriven until its run completes; the Slow step's lease and heartbeat marks.
Every page visited is checked for cards that overflow and text under 11 px, and screenshotted."""
from __future__ import annotations

import re
import signal
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from engine import store
from engine.verify import verify_run
from tests.e2e.conftest import LAPTOP, PHONE
from tests.e2e.layout import assert_fits, assert_laid_out, assert_text_readable
from tests.e2e.test_chaos import busy_worker, paused
from tests.e2e.test_dashboard import submit_from_form
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

SIZES = {"laptop": LAPTOP, "phone": PHONE}


@pytest.fixture(params=sorted(SIZES))
def size(request: pytest.FixtureRequest, page: Page) -> Iterator[str]:
    """The screen size of the test; the page must log no error to the console and throw none."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_viewport_size(SIZES[request.param])
    yield request.param
    page.set_viewport_size(LAPTOP)
    assert not errors, f"the browser console shows errors: {errors[:5]}"


def visible_svg(page: Page, box: str) -> str:
    """The picture of `#dag` or `#timeline` drawn for this width (the other one is hidden)."""
    return f"{box} svg:visible"


def test_the_guide_tells_a_first_visitor_what_to_do_and_links_how_it_works(page: Page, stack, size, screenshots):
    page.goto(stack.server.url + "/")
    expect(page.locator("#live-status.on")).to_be_visible()
    guide = page.locator("#guide")
    expect(guide).to_be_in_viewport()
    for words in ("Flaky tools", "Kill on the highlighted worker", "reclaim", "Redrive",
                  "Research and summarize", "stream", "cost", "Agent with approval", "Approve"):
        expect(guide).to_contain_text(words)
    for key in ("flaky", "slow", "redrive", "research", "agent_approval"):
        expect(page.locator(f"input[name=workflow][value={key}]")).to_be_attached()
    expect(page.locator(".intro")).to_contain_text("attempt")
    expect(page.locator("#workers .worker")).to_have_count(2, timeout=20_000)
    assert_laid_out(page)
    page.screenshot(path=str(screenshots / f"dashboard-{size}.png"), full_page=True)
    page.screenshot(path=str(screenshots / f"dashboard-{size}-top.png"))
    page.click(".intro a:text('How it works')")
    page.wait_for_url("**/how-it-works")
    diagram = page.locator("svg.states")
    expect(diagram).to_be_visible()
    for state in ("pending", "ready", "running", "succeeded", "dead letter", "cancelled"):
        expect(diagram.locator("text", has_text=re.compile(f"^{state}$"))).to_have_count(1)
    expect(page.locator(".transitions li")).to_have_count(8)
    assert_laid_out(page)
    page.screenshot(path=str(screenshots / f"how-it-works-{size}.png"), full_page=True)


def test_kill_on_the_highlighted_busy_worker_shows_the_reclaim_and_the_run_completes(
        page: Page, stack, size, screenshots):
    run_id = submit_from_form(page, stack, "flaky", goal=f"Survive a killed worker ({size})")
    highlighted = page.locator("#workers .worker.worker-busy")
    expect(highlighted.first).to_be_visible(timeout=30_000)
    with paused(stack.workers):  # so the worker chosen below still runs its step when killed
        busy = busy_worker(stack.conn, run_id)
        worker = page.locator(f"#workers .worker[data-worker='{busy}']")
        expect(worker).to_have_class(re.compile(r"\bworker-busy\b"), timeout=10_000)
        kill = worker.locator(".kill-button")
        expect(kill).to_be_in_viewport()  # reachable without scrolling, on a phone too
        page.screenshot(path=str(screenshots / f"chaos-run-{size}-top.png"))  # what the visitor sees first
        kill.click()
        page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator(".flash-ok")).to_contain_text(f"Killed {busy}")
    log = page.locator("#event-log")
    expect(log.locator(f"[data-type='worker_kill_requested']:has-text('{busy}')")).to_be_attached(timeout=20_000)
    expect(log.locator("[data-type='step_reclaimed']").first).to_be_attached(timeout=20_000)
    expect(log.locator(f"[data-type='worker_lost']:has-text('{busy}')")).to_be_attached(timeout=20_000)
    timeline = visible_svg(page, "#timeline")
    expect(page.locator(f"{timeline} [data-marker='reclaimed']").first).to_be_visible(timeout=20_000)
    expect(page.locator(f"{timeline} [data-marker='kill']").first).to_be_visible()
    expect(page.locator("#steps .reclaims").first).to_contain_text("reclaimed")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=120_000)
    events = store.events_after(stack.conn, run_id)
    assert "step_reclaimed" in [e.type for e in events] and events[-1].type == "run_completed"
    assert verify_run(stack.conn, run_id) == []
    assert_laid_out(page)
    page.locator("#event-log [data-type='worker_kill_requested']").first.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")  # the log keeps its own scroll: the kill stays in view
    page.screenshot(path=str(screenshots / f"chaos-run-{size}.png"), full_page=True)
    page.locator(".timeline-card").screenshot(path=str(screenshots / f"chaos-timeline-{size}.png"))
    page.locator(".dag-card").screenshot(path=str(screenshots / f"chaos-dag-{size}.png"))


def test_a_redriven_dead_letter_completes_its_run(page: Page, stack, size, screenshots):
    run_id = submit_from_form(page, stack, "redrive", goal=f"Upload after an outage ({size})")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "failed", timeout=60_000)
    dead = page.locator("#steps tr[data-step='tool_call.upload']")
    expect(dead).to_have_attribute("data-status", "dead_letter")
    expect(page.locator("#steps tr[data-step='llm_call.summarize']")).to_have_attribute("data-status", "blocked")
    expect(page.locator(f"{visible_svg(page, '#dag')} [data-step='llm_call.summarize']")).to_have_attribute(
        "data-status", "blocked")
    assert_laid_out(page)
    page.screenshot(path=str(screenshots / f"dead-letter-{size}.png"), full_page=True)
    if size == "laptop":  # from the dead letters page; on the phone, from the step's card
        page.goto(stack.server.url + "/dead-letters")
        entry = page.locator("#dead-letters .dead-letter", has_text=f"({size})")
        expect(entry).to_contain_text("injected failure")
        assert_laid_out(page)
        entry.locator(".redrive-button").click()
    else:
        dead.locator(".redrive-button").click()
    page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator(".flash-ok")).to_contain_text("you redrove upload")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(dead).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#event-log [data-type='step_redriven']")).to_have_count(1)
    steps = {s.name: s for s in store.run_get(stack.conn, run_id).steps}
    assert steps["tool_call.fetch"].attempt == 1, "the step that had succeeded ran again"
    assert steps["tool_call.upload"].attempt == 3, "the first fresh attempt passed"
    assert verify_run(stack.conn, run_id) == []
    expect(page.locator(".flash")).to_have_count(0, timeout=30_000)  # the message does not outlive its moment
    assert_laid_out(page)


def test_the_slow_step_shows_its_heartbeats_and_the_lease_they_renewed(page: Page, stack, screenshots):
    run_id = submit_from_form(page, stack, "slow")
    timeline = visible_svg(page, "#timeline")
    expect(page.locator(f"{timeline} [data-marker='heartbeat']")).to_have_count(1, timeout=30_000)
    expect(page.locator(f"{timeline} [data-marker='lease']")).to_have_count(1, timeout=30_000)
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(page.locator(f"{timeline} [data-marker='heartbeat']")).to_have_count(0)
    expect(page.locator(f"{timeline} [data-marker='lease'] title")).to_contain_text("heartbeats had renewed it")
    events = [e.type for e in store.events_after(stack.conn, run_id)]
    assert "step_reclaimed" not in events, "the step outlived its lease only thanks to the heartbeats"
    assert verify_run(stack.conn, run_id) == []
    assert_laid_out(page)
    page.screenshot(path=str(screenshots / "slow-run-laptop.png"), full_page=True)


def test_the_busy_highlight_follows_the_work(page: Page, stack):
    for worker in stack.workers:
        worker.signal(signal.SIGSTOP)  # nothing runs: no worker may be highlighted as busy
    try:
        page.goto(stack.server.url + "/")
        wait_for(lambda: all(not w.running for w in store.workers_list(stack.conn)), 20, "idle workers")
        page.reload()
        expect(page.locator("#workers .worker")).to_have_count(2)
        expect(page.locator("#workers .worker-busy")).to_have_count(0)
    finally:
        for worker in stack.workers:
            worker.signal(signal.SIGCONT)


def test_the_layout_checks_catch_an_overflowing_element_and_small_text(page: Page, stack):
    page.goto(stack.server.url + "/how-it-works")
    assert_laid_out(page)
    page.evaluate("""() => {
        const wide = document.createElement('span');
        wide.textContent = 'x'.repeat(400);
        wide.className = 'planted-wide';
        document.querySelector('.glossary dd').appendChild(wide);
    }""")
    with pytest.raises(AssertionError, match="planted-wide"):
        assert_fits(page)
    page.reload()
    page.evaluate("document.querySelector('svg.states .num text').style.fontSize = '6px'")
    with pytest.raises(AssertionError, match="under 11 px"):
        assert_text_readable(page)
