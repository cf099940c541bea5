"""The pages and forms in process (Flask's test client) on a real Postgres: safety headers, CSRF,
the submit form's errors, escaping, and error pages without internals."""
from __future__ import annotations

import re

import pytest

from app.forms import FormValues, run_body
from app.workflows import WORKFLOWS, Knobs, attempts_for, build_run
from engine import store
from engine.dag import parse_run
from engine.errors import InvalidRun
from engine.model import RunStatus, StepStatus
from engine.submit import submit_run
from engine.tools import tool_names
from engine.verify import verify_run
from tests.helpers import WorkerProcess, make_run, step, wait_for

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def csrf(client) -> str:
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(client, conn, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    for path in ("/", f"/runs/{run_id}", "/dead-letters", "/how-it-works", "/no-such-page"):
        response = client.get(path)
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        html = response.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline script on {path}"
        assert not re.search(r"<style|\sstyle=", html), f"inline style on {path}"
        assert not re.search(r"\son[a-z]+=", html), f"inline handler on {path}"


def test_a_form_without_its_csrf_token_is_refused_and_nothing_is_stored(client, conn):
    client.get("/")
    response = client.post("/submit", data={"workflow": "research"})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    response = client.post("/submit", data={"workflow": "research", "csrf_token": "forged"})
    assert response.status_code == 400
    assert store.run_ids(conn) == []


def test_the_form_submits_a_workflow_and_redirects_to_its_run(client, conn):
    response = client.post("/submit", data={"workflow": "fan_out", "branches": "4", "goal": "g",
                                            "csrf_token": csrf(client)})
    assert response.status_code == 303
    run_id = store.run_ids(conn)[0]
    assert response.headers["Location"].endswith(f"/runs/{run_id}")
    assert len(store.run_get(conn, run_id).steps) == 6


def test_a_form_error_is_shown_next_to_the_form_keeping_what_was_typed(client, conn):
    typed = '{"goal": "loop", "steps": [{"name": "tool_call.a", "input": {"tool": "fetch_data"}, "dependsOn": ["tool_call.a"]}]}'
    response = client.post("/submit", data={"workflow": "flaky", "goal": "my goal", "failure_rate": "0.3",
                                            "advanced_json": typed, "csrf_token": csrf(client)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "depends on itself" in page
    assert "my goal" in page and 'value="0.3"' in page and 'value="flaky" checked' in page
    assert "&#34;dependsOn&#34;: [&#34;tool_call.a&#34;]" in page  # the JSON as typed, escaped
    assert store.run_ids(conn) == []


@pytest.mark.parametrize("field, value, message", [
    ("failure_rate", "2", "failure rate must be between 0 and 0.8"),
    ("branches", "99", "branches must be from 1 to 8"),
    ("advanced_json", "{nope", "the JSON is malformed"),
    ("workflow", "nonsense", "choose one of the workflows"),
])
def test_bad_knobs_are_explained(client, field, value, message):
    data = {"workflow": "research", field: value, "csrf_token": csrf(client)}
    response = client.post("/submit", data=data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_a_goal_or_output_with_markup_is_shown_as_text(client, conn, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data", query=XSS), goal=XSS), settings)
    for path in (f"/runs/{run_id}", "/"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>window.__xss" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page


def test_unknown_runs_and_bad_ids_are_404_pages(client):
    for path in ("/runs/00000000-0000-0000-0000-000000000000", "/runs/not-a-uuid"):
        response = client.get(path)
        assert response.status_code == 404
        assert "Not found" in response.get_data(as_text=True)


def test_an_unexpected_error_shows_an_id_and_no_internals(app, caplog):
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("SELECT secret FROM internals")

    response = app.test_client().get("/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    error_id = re.search(r"Error id <code>([0-9a-f]{12})</code>", page).group(1)
    assert "secret" not in page and "Traceback" not in page
    assert error_id in caplog.text and "SELECT secret" in caplog.text
    json_response = app.test_client().get("/boom", headers={"Accept": "application/json"})
    assert json_response.get_json()["errorId"] and "secret" not in json_response.get_data(as_text=True)


def test_a_body_over_the_cap_is_413(client, web_settings):
    response = client.post("/api/runs", data=b"x" * (web_settings.max_body_bytes + 1),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "larger" in response.get_json()["error"]


def test_cancel_and_redrive_forms_act_and_come_back_with_a_message(client, conn, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="sleep", seconds=60)), settings)
    token = csrf(client)
    response = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "you cancelled the run" in response.get_data(as_text=True)
    assert store.run_get(conn, run_id).status == RunStatus.CANCELLED
    again = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "already cancelled" in again.get_data(as_text=True)
    redrive = client.post("/steps/999999/redrive", data={"csrf_token": token})
    assert redrive.status_code == 404


def test_redrive_from_the_dead_letters_page_leads_to_the_run_naming_the_step_and_the_run_completes(
        client, conn, settings):
    response = client.post("/submit", data={"workflow": "redrive", "goal": "g", "csrf_token": csrf(client)})
    run_id = store.run_ids(conn)[0]
    worker = WorkerProcess(settings.database_url, "worker-web-redrive", 2)
    try:
        wait_for(lambda: store.run_get(conn, run_id).status == RunStatus.FAILED, 30, "the run to fail")
        page = client.get(f"/runs/{run_id}").get_data(as_text=True)
        assert re.search(r'data-step="llm_call.summarize" data-status="blocked"', page), "a step behind the dead letter"
        assert "Redrive upload" in client.get("/dead-letters").get_data(as_text=True)
        dead = next(s for s in store.run_get(conn, run_id).steps if s.status == StepStatus.DEAD_LETTER)
        response = client.post(f"/steps/{dead.id}/redrive", data={"csrf_token": csrf(client)})
        assert response.status_code == 303 and response.headers["Location"].endswith(f"/runs/{run_id}")
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert re.search(r"you redrove upload: it got a fresh budget of attempts", page)
        wait_for(lambda: store.run_get(conn, run_id).status == RunStatus.COMPLETED, 30, "the redriven run to complete")
    finally:
        worker.stop()
    fetch = next(s for s in store.run_get(conn, run_id).steps if s.name == "tool_call.fetch")
    assert fetch.attempt == 1, "the step that had succeeded was not run again"
    assert verify_run(conn, run_id) == []


def test_the_how_it_works_page_draws_the_state_diagram_and_is_linked_from_every_page(client, conn, settings):
    page = client.get("/how-it-works").get_data(as_text=True)
    assert '<svg class="states"' in page
    for state in ("pending", "ready", "running", "succeeded", "dead letter", "cancelled"):
        assert f">{state}</text>" in page
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    for path in ("/", f"/runs/{run_id}", "/dead-letters"):
        assert 'href="/how-it-works"' in client.get(path).get_data(as_text=True)


def test_the_preview_fills_the_advanced_box_with_the_selected_workflow(client):
    page = client.get("/workflows/preview?workflow=poison_pill&branches=3").get_data(as_text=True)
    assert page.startswith("<textarea") and "&#34;crash&#34;: true" in page
    assert page.count("(safe branch") == 3


@pytest.mark.parametrize("key", sorted(WORKFLOWS))
def test_every_workflow_is_a_valid_run(key, settings):
    body = build_run(key, Knobs("goal", None, 3), settings)
    spec = parse_run(body, settings, tool_names())
    assert spec.steps and all(s.name.split(".")[0] in ("tool_call", "llm_call") for s in spec.steps)


def test_workflow_knobs_shape_the_run(settings):
    flaky = build_run("flaky", Knobs("g", None, 5), settings)
    fetches = [s for s in flaky["steps"] if s["name"].startswith("tool_call.fetch")]
    assert len(fetches) == 5 and all(s["input"]["failureRate"] == 0.4 for s in flaky["steps"])
    assert all(s["maxAttempts"] == attempts_for(0.4) for s in flaky["steps"])
    poison = build_run("poison_pill", Knobs("g", 0.2, 2), settings)
    crash = next(s for s in poison["steps"] if s["input"].get("crash"))
    assert crash["maxAttempts"] == 3 and "failureRate" not in crash["input"]
    slow = build_run("slow", Knobs("g", None, 1), settings)
    assert max(s["input"].get("sleepSeconds", 0) for s in slow["steps"]) > settings.lease_seconds


def test_a_goal_too_long_is_refused_by_the_form(settings):
    with pytest.raises(InvalidRun, match="longer than"):
        run_body(FormValues(goal="x" * 501), settings)
