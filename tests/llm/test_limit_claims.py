"""The limited claim in one process, step by step (no worker): a limit row admits no more than its
concurrency, tokensPerMinute stops admissions once the window's recorded tokens reach it and says
when to look again, and steps left waiting keep their attempts."""
from __future__ import annotations

import json

from engine.store.provider_limits import limits_configure, limits_list, parse_limits, step_claim_limited
from engine.store.streams import UsageRecord, llm_usage_record
from engine.submit import submit_run
from tests.helpers import make_run, step


def claim(conn, slots: int, window: float = 60.0):
    return step_claim_limited(conn, "w-test", 1, slots, lease_seconds=30, window_seconds=window)


def test_concurrency_admits_up_to_the_limit_and_the_rest_stay_ready_with_their_attempts(conn, settings):
    limits_configure(conn, parse_limits(json.dumps({"llm": {"concurrency": 2}})))
    run_id, _ = submit_run(conn, make_run(*[step(f"llm_call.s{i}", prompt="x") for i in range(5)]), settings)
    first = claim(conn, 8)
    assert len(first.steps) == 2 and {s.limit_key for s in first.steps} == {"llm"}, "llm:offline falls back to llm"
    assert first.wait_seconds is not None and first.wait_seconds <= 0.25
    assert claim(conn, 8).steps == []
    rows = conn.execute("SELECT status, attempt FROM steps WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
    assert [(r["status"], r["attempt"]) for r in rows] == [("running", 1)] * 2 + [("ready", 0)] * 3
    [limit] = limits_list(conn, 60)
    assert (limit.key, limit.running, limit.waiting, limit.window_requests) == ("llm", 2, 3, 2)


def test_tokens_per_minute_stops_admissions_once_the_windows_tokens_reach_it(conn, settings):
    limits_configure(conn, parse_limits(json.dumps({"llm:offline": {"tokensPerMinute": 100}})))
    run_id, _ = submit_run(conn, make_run(*[step(f"llm_call.s{i}", prompt="x") for i in range(3)]), settings)
    [first] = claim(conn, 1).steps
    llm_usage_record(conn, UsageRecord(run_id, first.id, first.attempt, "m", 90, 30, 0.0, 5.0))
    blocked = claim(conn, 8)
    assert blocked.steps == [] and 0 < blocked.wait_seconds <= 60
    [limit] = limits_list(conn, 60)
    assert (limit.window_tokens, limit.window_requests) == (120, 1)
    # A new window (a short one here) admits again.
    assert len(claim(conn, 8, window=0.001).steps) == 2
