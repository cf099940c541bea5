"""The claim statement with the routing filter still walks the `steps_ready` index in
(run_at, id) order: the tool filter is applied to the rows that index returns, never by scanning
the steps table. (EXPLAIN on a table with many finished steps and a few ready ones, as in production.)"""
from __future__ import annotations

import uuid

from engine.store.steps import _CLAIM

FILL = """
INSERT INTO runs (id, goal, status, step_count, request_hash) VALUES (%(run)s, 'plan', 'running', 20000, '');
INSERT INTO steps (run_id, name, kind, tool, input, status, max_attempts, attempt_limit, timeout_seconds,
                   backoff_base, backoff_max, pending_deps)
SELECT %(run)s, 'tool_call.s' || i, 'tool_call', (ARRAY['alpha', 'beta', 'fetch_data'])[1 + mod(i, 3)],
       '{}', CASE WHEN mod(i, 100) = 0 THEN 'ready' ELSE 'succeeded' END, 5, 5, 60, 1, 60, 0
FROM generate_series(1, 20000) AS i;
ANALYZE steps;
"""


def claim_plan(conn, tools: list[str] | None) -> str:
    rows = conn.execute("EXPLAIN " + _CLAIM, {"limit": 8, "worker": "w", "worker_id": 0, "lease": 15,
                                              "tools": tools}).fetchall()
    return "\n".join(row["QUERY PLAN"] for row in rows)


def test_the_routed_claim_uses_the_ready_index_and_filters_tools_on_its_rows(conn, capsys):
    run = uuid.uuid4()
    for statement in FILL.split(";")[:-1]:
        conn.execute(statement, {"run": run} if "%(run)s" in statement else None)
    for tools in (["alpha", "fetch_data"], None):
        plan = claim_plan(conn, tools)
        with capsys.disabled():
            print(f"\n  claim plan with tools={tools}:\n" + "\n".join("    " + line for line in plan.splitlines()))
        assert "Index Scan using steps_ready on steps" in plan
        assert "Seq Scan on steps" not in plan and "Sort" not in plan.split("CTE claimed")[0]
        assert "LockRows" in plan
    assert "ANY" in claim_plan(conn, ["alpha"])  # the filter is in the plan, on the index scan's rows
