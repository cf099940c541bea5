"""Routing on every claim path, in one process (no worker): the fast claim, the claim inside a
record's transaction (`step_record_and_claim`) and the limited claim (steps with a limit key) each
take only steps whose tool the claimer offers, and the idle waits look only at those steps."""
from __future__ import annotations

from engine.model import StepStatus
from engine.store import StepResult, step_claim, step_record_and_claim, step_seconds_until_ready
from engine.store.provider_limits import step_claim_limited
from engine.store.tools import tools_offer
from engine.submit import submit_run
from engine.tools.registry import ToolDefaults
from tests.chaos.support import assert_invariants
from tests.helpers import make_run, step

ALPHA_POOL = ["alpha", "fetch_data"]  # a worker offering the built-in fetch_data and the user tool alpha
BETA_POOL = ["beta"]


def offer(conn) -> None:  # noqa: ANN001
    tools_offer(conn, {"alpha": ToolDefaults(), "beta": ToolDefaults()})  # submission now accepts both


def test_the_fast_claim_and_the_records_claim_take_only_the_claimers_tools(conn, settings):
    offer(conn)
    run_id, _ = submit_run(conn, make_run(step("tool_call.f", tool="fetch_data"),
                                          step("tool_call.b", ["tool_call.f"], tool="beta"),
                                          step("tool_call.a", ["tool_call.f"], tool="alpha")), settings)
    assert step_claim(conn, "beta-1", 1, 8, 30, tools=BETA_POOL) == []
    assert step_seconds_until_ready(conn, tools=BETA_POOL) is None  # nothing it could run: it sleeps its full poll
    assert step_seconds_until_ready(conn, tools=ALPHA_POOL) is not None
    [fetch] = step_claim(conn, "alpha-1", 2, 8, 30, tools=ALPHA_POOL)
    assert fetch.tool == "fetch_data"

    # Recording fetch makes alpha and beta ready; the claim in the same transaction takes alpha only.
    done = StepResult(fetch.id, fetch.attempt, True, output_json='{"ok": true}', run_id=fetch.run_id)
    summary, claimed = step_record_and_claim(conn, "alpha-1", 2, [done], 8, 30, tools=ALPHA_POOL)
    assert summary.newly_ready == 2 and [s.tool for s in claimed] == ["alpha"]
    [beta] = step_claim(conn, "beta-1", 1, 8, 30, tools=BETA_POOL)
    assert beta.tool == "beta"
    for claimed_step, worker in ((claimed[0], "alpha-1"), (beta, "beta-1")):
        step_record_and_claim(conn, worker, 1, [StepResult(claimed_step.id, claimed_step.attempt, True,
                                                           output_json="{}", run_id=run_id)], 8, 30, tools=BETA_POOL)
    statuses = conn.execute("SELECT status FROM steps WHERE run_id = %s", (run_id,)).fetchall()
    assert {r["status"] for r in statuses} == {StepStatus.SUCCEEDED}
    assert_invariants(conn, [run_id])


def test_the_limited_claim_takes_only_the_claimers_tools(conn, settings):
    offer(conn)
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="alpha", limit_key="api"),
                                          step("tool_call.b", tool="beta", limit_key="api")), settings)
    assert step_claim(conn, "alpha-1", 2, 8, 30, tools=ALPHA_POOL) == []  # limited steps: not the fast claim's
    taken = step_claim_limited(conn, "beta-1", 1, 8, lease_seconds=30, window_seconds=60, tools=BETA_POOL)
    assert [s.tool for s in taken.steps] == ["beta"]
    nothing = step_claim_limited(conn, "beta-1", 1, 8, lease_seconds=30, window_seconds=60, tools=BETA_POOL)
    assert nothing.steps == [] and nothing.wait_seconds is None  # alpha's step is not its business
    [alpha] = step_claim_limited(conn, "alpha-1", 2, 8, lease_seconds=30, window_seconds=60, tools=ALPHA_POOL).steps
    assert alpha.tool == "alpha"
    rows = conn.execute("SELECT tool, lease_owner FROM steps WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
    assert [(r["tool"], r["lease_owner"]) for r in rows] == [("alpha", "alpha-1"), ("beta", "beta-1")]


def test_the_idle_wait_skips_the_steps_of_a_client_at_its_running_cap(conn, settings):
    """MAX_RUNNING_STEPS_PER_CLIENT in the idle wait: a worker must not wake early for steps it may
    not claim (a client at its cap), and must see another client's step."""
    submit_run(conn, make_run(*[step(f"tool_call.s{i}", tool="fetch_data") for i in range(2)], goal="hog"),
               settings, client="hog")
    [held] = step_claim(conn, "w", 0, 1, 30, client_cap=1)
    assert step_seconds_until_ready(conn, client_cap=1) is None  # hog's other step: not claimable now
    assert step_seconds_until_ready(conn) is not None  # uncapped, it is
    submit_run(conn, make_run(step("tool_call.t", tool="fetch_data"), goal="other"), settings, client="other")
    assert step_seconds_until_ready(conn, client_cap=1) is not None
    assert held.name == "tool_call.s0"
