"""The claim statement with the routing filter walks the `steps_ready` index in (run_at, id) order:
the tool filter is applied to the rows that index returns, never by collecting every ready step
and sorting them. Checked on a table of many ready steps with stale statistics (a burst on a fresh
database: the planner believes the table is nearly empty, which made it pick a bitmap scan and a
sort before the claim ran under `_CLAIM_PLANNER`), and again after ANALYZE with a few ready steps."""
from __future__ import annotations

import re
import uuid

import pytest
from psycopg import sql

from engine.store.steps import _CLAIM, _CLAIM_CAPPED, _CLAIM_PLANNER, _SECONDS_UNTIL_READY

RUN = "INSERT INTO runs (id, goal, status, step_count, request_hash) VALUES (%(run)s, 'plan', 'running', 20000, '')"
STEPS = """
INSERT INTO steps (run_id, name, kind, tool, input, status, max_attempts, attempt_limit, timeout_seconds,
                   backoff_base, backoff_max, pending_deps)
SELECT %(run)s, 'tool_call.s' || i, 'tool_call', (ARRAY['alpha', 'beta', 'fetch_data'])[1 + mod(i, 3)],
       '{}', CASE WHEN mod(i, %(every)s) = 0 THEN 'ready' ELSE 'succeeded' END, 5, 5, 60, 1, 60, 0
FROM generate_series(1, 20000) AS i
"""


def claim_plan(conn, tools: list[str] | None) -> str:
    """EXPLAIN ANALYZE of the claim as the store runs it (rolled back: nothing is claimed)."""
    with conn.transaction(force_rollback=True):
        conn.execute(_CLAIM_PLANNER)
        rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + _CLAIM,
                            {"limit": 8, "worker": "w", "worker_id": 0, "lease": 15, "tools": tools,
                             "parent_bytes": 1 << 30, "client_cap": 0}).fetchall()
    return "\n".join(row["QUERY PLAN"] for row in rows)


@pytest.mark.parametrize(("every", "analyze"), [(1, False), (100, True)], ids=["stale-stats-all-ready", "analyzed-1pct-ready"])
def test_the_routed_claim_uses_the_ready_index_and_filters_tools_on_its_rows(conn, capsys, every, analyze):
    run = uuid.uuid4()
    conn.execute(RUN, {"run": run})
    conn.execute(STEPS, {"run": run, "every": every})
    if analyze:
        conn.execute("ANALYZE steps")
    for tools in (["alpha", "fetch_data"], ["beta"], None):
        plan = claim_plan(conn, tools)
        picked = plan.split("CTE claimed")[0]
        with capsys.disabled():
            print(f"\n  claim plan ({'analyzed' if analyze else 'stale statistics'}), tools={tools}:\n"
                  + "\n".join("    " + line for line in picked.splitlines()))
        assert "Index Scan using steps_ready on steps" in picked
        assert "Sort" not in picked and "Seq Scan" not in picked and "Bitmap" not in picked
        assert "LockRows (actual rows=8" in picked
        if tools:
            assert "tool = ANY" in picked  # the filter is on the index scan's rows
        with conn.transaction(force_rollback=True):
            conn.execute(_CLAIM_PLANNER)
            until = "\n".join(r["QUERY PLAN"] for r in conn.execute(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + _SECONDS_UNTIL_READY, {"tools": tools}))
        assert "Scan using steps_ready on steps (actual rows=1 " in until and "Aggregate" not in until, until


def test_a_claim_connection_keeps_the_claims_planner_settings_for_its_session(conn):
    from engine.store import step_claim_session

    step_claim_session(conn)
    settings = {name: conn.execute(f"SHOW {name}").fetchone()[name] for name in ("enable_sort", "enable_bitmapscan", "jit")}
    assert settings == {"enable_sort": "off", "enable_bitmapscan": "off", "jit": "off"}


def generic_plan(conn, statement: str, params: dict, local_settings: str | None = None) -> str:
    """EXPLAIN ANALYZE of `statement`'s generic plan, as a worker's prepared statement runs it under
    `plan_cache_mode = force_generic_plan` (rolled back: nothing is claimed)."""
    names: list[str] = []

    def placeholder(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)[sb]", placeholder, statement).replace("%%", "%")
    conn.execute(f"PREPARE generic_claim AS {text}")
    try:
        with conn.transaction(force_rollback=True):
            if local_settings:
                conn.execute(local_settings)
            args = sql.SQL(", ").join(sql.Literal(params[name]) for name in names)
            rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE generic_claim ({})")
                                .format(args)).fetchall()
    finally:
        conn.execute("DEALLOCATE generic_claim")  # a prepared statement outlives the rollback
    return "\n".join(row["QUERY PLAN"] for row in rows)


@pytest.mark.parametrize(("every", "analyze"), [(1, False), (100, True)], ids=["stale-stats-all-ready", "analyzed-1pct-ready"])
@pytest.mark.parametrize("session", ["claim", "record"])
def test_the_generic_plans_of_both_claims_walk_the_ready_index(conn, capsys, every, analyze, session):
    """Workers run the claims with generic plans (`_GENERIC_PLANS`) and the claim's planner settings:
    for the claim connection's session, and on the record connection inside the record transaction
    right before its claim (`_record_statements`). Either way, stale statistics or not, the plan is
    the ordered walk of `steps_ready`, capped or not."""
    from engine.store import step_claim_session, step_record_session

    run = uuid.uuid4()
    conn.execute(RUN, {"run": run})
    conn.execute(STEPS, {"run": run, "every": every})
    if analyze:
        conn.execute("ANALYZE steps")
    (step_claim_session if session == "claim" else step_record_session)(conn)
    assert conn.execute("SHOW plan_cache_mode").fetchone()["plan_cache_mode"] == "force_generic_plan"
    params = {"limit": 8, "worker": "w", "worker_id": 0, "lease": 15, "tools": ["alpha", "fetch_data"],
              "parent_bytes": 1 << 30, "client_cap": 4}
    for name, statement in (("plain", _CLAIM), ("capped", _CLAIM_CAPPED)):
        plan = generic_plan(conn, statement, params, _CLAIM_PLANNER if session == "record" else None)
        picked = plan.split("CTE claimed")[0]
        with capsys.disabled():
            print(f"\n  generic {name} claim plan, {session} connection ({'analyzed' if analyze else 'stale statistics'}):\n"
                  + "\n".join("    " + line for line in picked.splitlines()))
        assert "$1" in plan or "$2" in plan, "not the generic plan"
        assert "Index Scan using steps_ready on steps" in picked, plan
        assert "Seq Scan on steps" not in picked and "Bitmap" not in picked, plan
        assert "LockRows (actual rows=8" in picked, plan
