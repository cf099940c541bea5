"""The dashboard in a real browser: a run submitted from the form goes green live on its page
without a reload; markup in a goal shows as text; a form without its CSRF token is refused."""
from __future__ import annotations

import json
import re
import signal

import pytest
from playwright.sync_api import Page, expect

from engine import store

pytestmark = pytest.mark.e2e

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def submit_from_form(page: Page, stack, workflow: str, goal: str = "") -> str:
    page.goto(stack.server.url + "/")
    page.check(f"input[name=workflow][value={workflow}]")
    if goal:
        page.fill("input[name=goal]", goal)
    page.click("#start-run")
    page.wait_for_url("**/runs/*")
    return page.url.rsplit("/", 1)[1]


def test_research_steps_turn_green_live_and_the_run_completes_without_reload(page: Page, stack):
    for worker in stack.workers:
        worker.signal(signal.SIGSTOP)  # paused: the page must show the run before any step runs
    try:
        run_id = submit_from_form(page, stack, "research")
        expect(page.locator("#dag svg:visible [data-step='tool_call.fetch']")).to_have_attribute("data-status", "ready")
        expect(page.locator("#run-header")).to_have_attribute("data-status", "running")
        page.evaluate("window.__sameDocument = true")
        expect(page.locator("#live-status.on")).to_be_visible()
    finally:
        for worker in stack.workers:
            worker.signal(signal.SIGCONT)
    for name in ("tool_call.fetch", "tool_call.rank", "llm_call.summarize", "tool_call.notify"):
        node = page.locator(f"#dag svg:visible [data-step='{name}']")
        expect(node).to_have_attribute("data-status", "succeeded", timeout=30_000)
        expect(page.locator(f"#steps tr[data-step='{name}']")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed")
    expect(page.locator("#event-log [data-type='run_completed']")).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert store.run_get(stack.conn, run_id).status == "completed"


def test_markup_in_a_goal_renders_as_text(page: Page, stack):
    run_id = submit_from_form(page, stack, "research", goal=XSS)
    expect(page.locator("#run-header h1")).to_have_text(XSS)
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(page.locator("#steps tr[data-step='llm_call.summarize'] .stream-text")).to_contain_text("<script>")
    page.goto(stack.server.url + "/")
    expect(page.locator(f"#runs [data-run-id='{run_id}'] .run-goal")).to_have_text(XSS)
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0


def test_a_form_without_its_csrf_token_is_refused(page: Page, stack):
    before = len(store.run_ids(stack.conn))
    page.goto(stack.server.url + "/")
    page.evaluate("document.querySelector('#submit-form input[name=csrf_token]').remove()")
    page.click("#start-run")
    expect(page.locator("h1")).to_contain_text("400")
    expect(page.locator("main")).to_contain_text("security token is missing")
    page.goto(stack.server.url + "/")
    page.evaluate("document.querySelector('#submit-form input[name=csrf_token]').value = 'forged'")
    page.click("#start-run")
    expect(page.locator("h1")).to_contain_text("400")
    assert len(store.run_ids(stack.conn)) == before


def test_a_validation_error_is_shown_beside_the_form_keeping_the_input(page: Page, stack):
    page.goto(stack.server.url + "/")
    page.click(".advanced summary")
    page.fill("#advanced-json", '{"goal": "x", "steps": [{"name": "tool_call.a", "input": {"tool": "teleport"}}]}')
    page.click("#start-run")
    expect(page.locator("#form-error")).to_contain_text("unknown tool 'teleport'")
    expect(page.locator("#advanced-json")).to_have_value(
        '{"goal": "x", "steps": [{"name": "tool_call.a", "input": {"tool": "teleport"}}]}')


def test_the_advanced_box_takes_the_selected_workflow_as_json_and_submits_it(page: Page, stack):
    page.goto(stack.server.url + "/")
    page.check("input[name=workflow][value=fan_out]")
    page.fill("input[name=branches]", "5")
    page.click(".advanced summary")
    page.click("text=Fill in the selected workflow")
    expect(page.locator("#advanced-json")).to_have_value(re.compile(r'"tool_call\.fetch_5"'))
    edited = json.loads(page.locator("#advanced-json").input_value())
    edited["goal"] = "edited by hand"
    page.fill("#advanced-json", json.dumps(edited))
    page.click("#start-run")
    page.wait_for_url("**/runs/*")
    expect(page.locator("#run-header h1")).to_have_text("edited by hand")
    expect(page.locator("#dag svg:visible [data-step]")).to_have_count(7)
