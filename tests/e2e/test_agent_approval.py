"""The "Agent with approval" demo in a real browser: the wait shows live with its prompt and time
left, Approve lets the run complete (and sends), Reject ends it failed (unsent); the map step's
children are one collapsed node in the DAG; "Re-run from here" opens a linked run."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from engine import store
from engine.verify import verify_run
from tests.e2e.test_dashboard import submit_from_form

pytestmark = pytest.mark.e2e

WAIT = "#waits .wait[data-step='wait.approve']"


def start_and_reach_the_wait(page: Page, stack) -> str:
    run_id = submit_from_form(page, stack, "agent_approval", goal="Brief the team on queues")
    expect(page.locator(WAIT)).to_have_attribute("data-status", "waiting", timeout=30_000)
    expect(page.locator(f"{WAIT} .wait-prompt")).to_have_text("Send this summary to the team?")
    expect(page.locator(f"{WAIT} .wait-left")).to_contain_text("left")
    expect(page.locator("#dag svg:visible [data-step='tool_call.fetch ×4']")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#steps tr[data-step='wait.approve']")).to_have_attribute("data-status", "waiting")
    return run_id


def test_a_visitor_approves_and_the_run_completes(page: Page, stack, screenshots):
    run_id = start_and_reach_the_wait(page, stack)
    page.screenshot(path=str(screenshots / "agent-approval-waiting.png"), full_page=True)
    page.fill(f"{WAIT} input[name=comment]", "looks right")
    page.click(f"{WAIT} .approve-button")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(page.locator("#steps tr[data-step='tool_call.notify']")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#event-log [data-type='step_signalled']")).to_have_count(1)
    wait_step = next(s for s in store.run_get(stack.conn, run_id).steps if s.name == "wait.approve")
    assert wait_step.output == {"approved": True, "comment": "looks right"}
    assert [s.sender for s in store.signals_for_run(stack.conn, run_id)] == ["127.0.0.1"]
    assert verify_run(stack.conn, run_id) == []


def test_a_visitor_rejects_and_the_run_fails_unsent(page: Page, stack):
    run_id = start_and_reach_the_wait(page, stack)
    page.click(f"{WAIT} .reject-button")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "failed", timeout=30_000)
    expect(page.locator("#steps tr[data-step='wait.approve']")).to_have_attribute("data-status", "dead_letter")
    # Still pending in the database; the page shows it blocked behind the rejected (dead-lettered) wait.
    expect(page.locator("#steps tr[data-step='tool_call.notify']")).to_have_attribute("data-status", "blocked")
    expect(page.locator(f"{WAIT} form")).to_have_count(0)
    assert verify_run(stack.conn, run_id) == []

    # Re-run from the wait: a new run, linked to this one, that asks again without fetching again.
    page.click("#steps tr[data-step='wait.approve'] .rerun-button")
    expect(page.locator(".source-run")).to_have_attribute("data-source-run", run_id)
    expect(page.locator(WAIT)).to_have_attribute("data-status", "waiting", timeout=30_000)
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != run_id
    reused = [e.step for e in store.events_after(stack.conn, new_id) if e.type == "step_reused"]
    assert "tool_call.plan" in reused and "llm_call.summarize" in reused
    store.run_cancel(stack.conn, new_id)
    assert verify_run(stack.conn, new_id) == []


def test_signal_form_without_csrf_token_is_refused(page: Page, stack):
    run_id = start_and_reach_the_wait(page, stack)
    response = page.request.post(f"{stack.server.url}/runs/{run_id}/signals/wait.approve",
                                 form={"decision": "approve"})
    assert response.status == 400
    assert store.signals_for_run(stack.conn, run_id) == []
    store.run_cancel(stack.conn, run_id)
