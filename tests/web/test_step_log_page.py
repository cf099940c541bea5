"""A tool's `ctx.log` lines on the run page: shown in the event log as text, never as markup."""
from __future__ import annotations

from engine import store
from engine.store.steplog import step_log
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import make_run, step, wait_for

XSS = '<script>window.__xss=1</script>'


def test_a_step_log_line_is_shown_escaped_on_the_run_page(client, conn, settings):
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    claimed = wait_for(lambda: store.step_claim(conn, "w1", 0, 1, 300), 5, "a claim")[0]
    assert step_log(conn, claimed.id, claimed.run_id, claimed.attempt, "w1", "warning", f"fetched {XSS}")
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "warning: fetched &lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    assert XSS not in page
    assert verify_run(conn, str(run_id)) == []
