"""Provider limits enforced in the claim across workers: `concurrency` is never exceeded (checked
from the audit log's intervals) while steps of other keys flow; `requestsPerMinute` spreads
admissions over windows; one 429 with Retry-After pauses the key once, and no waiting step loses
an attempt."""
from __future__ import annotations

import json

import pytest

from bench.fake_llm import FakeLLM, Reply
from engine import store
from engine.model import Event
from engine.store.provider_limits import limits_list, parse_limits
from engine.submit import submit_run
from tests.chaos.support import assert_invariants, run_events, wait_registered, wait_terminal
from tests.helpers import make_run, step

ENDS = {"step_succeeded", "step_retry_scheduled", "step_dead_lettered", "step_reclaimed", "step_cancelled"}


def intervals(events: list[Event], names: set[str]) -> list[tuple[float, float]]:
    """(start, end) of every attempt of the named steps, from the audit log alone."""
    open_at: dict[tuple[int, int], float] = {}
    spans = []
    for event in sorted(events, key=lambda e: e.id):
        key = (event.step_id, event.attempt)
        if event.step not in names:
            continue
        if event.type == "step_started":
            open_at[key] = event.ts.timestamp()
        elif event.type in ENDS and key in open_at:
            spans.append((open_at.pop(key), event.ts.timestamp()))
    assert not open_at, f"attempts without an end: {open_at}"
    return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    # An end and a start at the same instant do not overlap: ends sort first.
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_concurrency_two_is_never_exceeded_across_four_workers_while_other_keys_flow(conn, settings, spawn):
    limited = [step(f"llm_call.s{i}", prompt=f"Summarize part {i}", limit_key="llm:slow") for i in range(10)]
    other = [step(f"tool_call.t{i}", tool="sleep", seconds=0.2) for i in range(16)]
    run_id, _ = submit_run(conn, make_run(*limited, *other, goal="limited"), settings)
    env = {"LLM_LIMITS": json.dumps({"llm:slow": {"concurrency": 2}}), "LLM_OFFLINE_TOKENS_PER_SECOND": "15"}
    procs = [spawn(f"w{i}", 8, **env) for i in range(4)]
    wait_registered(conn, *procs)
    assert wait_terminal(conn, [run_id], 90)[str(run_id)] == "completed"
    events = run_events(conn, run_id)
    llm_names = {s["name"] for s in limited}
    assert most_at_once(intervals(events, llm_names)) == 2
    # The other key was not held up behind the limit: its steps all finished before the last LLM step started.
    last_llm_start = max(e.ts for e in events if e.type == "step_started" and e.step in llm_names)
    other_done = [e.ts for e in events if e.type == "step_succeeded" and e.step.startswith("tool_call.")]
    assert len(other_done) == 16 and max(other_done) < last_llm_start
    assert_invariants(conn, [run_id])


def test_requests_per_minute_spreads_sixty_steps_over_two_windows(conn, settings, spawn):
    runs = [submit_run(conn, make_run(*[step(f"llm_call.s{i}", prompt="Hi", limit_key="llm:rpm") for i in range(20)],
                                      goal=f"rpm {n}"), settings)[0] for n in range(3)]
    env = {"LLM_LIMITS": json.dumps({"llm:rpm": {"requestsPerMinute": 30}}), "LIMIT_WINDOW_SECONDS": "1.5"}
    procs = [spawn(f"w{i}", 16, **env) for i in range(2)]
    wait_registered(conn, *procs)
    assert set(wait_terminal(conn, runs, 90).values()) == {"completed"}
    starts = sorted(e.ts.timestamp() for run in runs for e in run_events(conn, run, "step_started"))
    assert len(starts) == 60
    # Fixed windows of 1.5 s admit 30 each: the 31st request is at least one window after the first.
    assert starts[30] - starts[0] >= 1.5
    assert_invariants(conn, runs)


def test_one_429_pauses_the_key_once_without_using_up_attempts_and_all_steps_finish(conn, settings, spawn, fake_llm):
    server = FakeLLM([Reply.rate_limited(2)], Reply.ok(tokens_per_second=100))
    fake_llm.append(server)
    steps = [step(f"llm_call.s{i}", prompt=f"Summarize {i}", max_attempts=1) for i in range(8)]
    run_id, _ = submit_run(conn, make_run(*steps, goal="rate limited"), settings)
    procs = [spawn(f"w{i}", 4, LLM_BASE_URL=server.url, LLM_MODEL="tiny") for i in range(2)]
    wait_registered(conn, *procs)
    assert wait_terminal(conn, [run_id], 60)[str(run_id)] == "completed"
    [paused] = run_events(conn, run_id, "limit_paused")
    assert paused.detail["key"] == "llm:offline" and paused.detail["retryAfterSeconds"] == 2
    run = store.run_get(conn, str(run_id))
    assert all(s.status == "succeeded" for s in run.steps), "maxAttempts 1: no attempt was used up by the pause"
    hit = next(s for s in run.steps if s.id == paused.step_id)
    assert (hit.attempt, hit.attempt_limit) == (2, 2), "the attempt that got the 429 was given back"
    assert all(s.attempt == 1 for s in run.steps if s.id != paused.step_id)
    until = paused.ts.timestamp() + 2
    late = [e for e in run_events(conn, run_id, "step_started") if paused.ts.timestamp() < e.ts.timestamp() < until - 0.05]
    assert late == [], "nothing of the paused key started during the pause"
    assert_invariants(conn, [run_id])


def test_limits_are_listed_with_their_use_and_malformed_ones_refused(conn):
    assert parse_limits('{"llm": {"concurrency": 2, "requestsPerMinute": null}}') == {
        "llm": {"concurrency": 2, "requests_per_minute": None, "tokens_per_minute": None}}
    for bad in ("[1]", '{"llm": {"burst": 2}}', '{"llm": {"concurrency": -1}}', "{nope"):
        with pytest.raises(ValueError):
            parse_limits(bad)
    assert limits_list(conn, 60) == []
