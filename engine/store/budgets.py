"""Run budgets (`"budget": {"tokens": N, "usd": x}`): stored with the run, checked before an LLM
step is claimed. A run whose spend (summed from `llm_usage`) has reached its budget while an LLM
step of it waits to start is failed with reason `budget_exceeded`: its unfinished steps are
cancelled and an audited `budget_exceeded` event names the budget and the spend.
"""
from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.dag import RunSpec

# Spend is the sum over every recorded attempt; a budget of NULL is no budget of that kind.
OVER_BUDGET_FILTER = """
    b.exceeded_at IS NULL AND (
        b.tokens <= (SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
                     FROM llm_usage u WHERE u.run_id = b.run_id)
        OR b.usd <= (SELECT coalesce(sum(u.cost_usd), 0) FROM llm_usage u WHERE u.run_id = b.run_id))
"""

_OVER_BUDGET = f"""
SELECT b.run_id, b.tokens, b.usd::float8 AS usd,
       (SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0) FROM llm_usage u
        WHERE u.run_id = b.run_id)::bigint AS spent_tokens,
       (SELECT coalesce(sum(u.cost_usd), 0) FROM llm_usage u WHERE u.run_id = b.run_id)::float8 AS spent_usd,
       (SELECT min(s.id) FROM steps s WHERE s.run_id = b.run_id AND s.kind = 'llm_call' AND s.status = 'ready') AS blocked_step
FROM run_budgets b JOIN runs r ON r.id = b.run_id AND r.status = 'running'
WHERE {OVER_BUDGET_FILTER}
  AND EXISTS (SELECT 1 FROM steps s WHERE s.run_id = b.run_id AND s.kind = 'llm_call' AND s.status = 'ready')
ORDER BY b.run_id
"""

# Steps first, then the run: the lock order of every other writer.
_FAIL_RUN = """
WITH cancelled AS (
    UPDATE steps SET status = 'cancelled', finished_at = now(),
           lease_owner = NULL, lease_worker_id = NULL, lease_expires_at = NULL
    WHERE run_id = %(run)s AND status IN ('pending', 'ready', 'running')
    RETURNING id, attempt
)
INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
SELECT %(run)s, id, %(worker)s, 'step_cancelled', attempt, jsonb_build_object('reason', 'budget_exceeded')
FROM cancelled ORDER BY id
"""


def run_budget_insert(conn: psycopg.Connection, run_id: UUID, tokens: int | None, usd: float | None) -> None:
    """Store a new run's budget (in the transaction that creates the run)."""
    conn.execute("INSERT INTO run_budgets (run_id, tokens, usd) VALUES (%s, %s, %s)",
                 (run_id, tokens, None if usd is None else Decimal(str(usd))))


def runs_fail_over_budget(conn: psycopg.Connection, worker: str | None) -> list[UUID]:
    """Fail every running run that is over its budget and has an LLM step waiting to start. Call in
    the claim's transaction, before picking steps, so that step is never started."""
    failed = []
    for row in conn.execute(_OVER_BUDGET).fetchall():
        conn.execute(_FAIL_RUN, {"run": row["run_id"], "worker": worker})
        if conn.execute("UPDATE runs SET status = 'failed', finished_at = now() WHERE id = %s AND status = 'running' "
                        "RETURNING id", (row["run_id"],)).fetchone() is None:
            continue
        detail = {"reason": "budget_exceeded",
                  "budget": {"tokens": row["tokens"], "usd": row["usd"]},
                  "spent": {"tokens": row["spent_tokens"], "usd": round(row["spent_usd"], 8)},
                  "blockedStepId": row["blocked_step"]}
        conn.execute("UPDATE run_budgets SET exceeded_at = now() WHERE run_id = %s", (row["run_id"],))
        conn.execute("INSERT INTO audit_log (run_id, step_id, worker, event, detail) VALUES "
                     "(%(run)s, %(step)s, %(worker)s, 'budget_exceeded', %(detail)s), "
                     "(%(run)s, NULL, %(worker)s, 'run_failed', %(reason)s)",
                     {"run": row["run_id"], "step": row["blocked_step"], "worker": worker, "detail": Jsonb(detail),
                      "reason": Jsonb({"reason": "budget_exceeded"})})
        failed.append(row["run_id"])
    return failed


def llm_run_extras(conn: psycopg.Connection, run_id: UUID, spec: RunSpec) -> None:
    """In the submitting transaction: the steps' limit keys and the run's budget, when it has them."""
    keyed = [(s.name, s.limit_key) for s in spec.steps if s.limit_key]
    if keyed:
        conn.execute("UPDATE steps s SET limit_key = k.key FROM unnest(%(names)s::text[], %(keys)s::text[]) AS k(name, key) "
                     "WHERE s.run_id = %(run)s AND s.name = k.name",
                     {"run": run_id, "names": [n for n, _ in keyed], "keys": [k for _, k in keyed]})
    if spec.budget_tokens is not None or spec.budget_usd is not None:
        run_budget_insert(conn, run_id, spec.budget_tokens, spec.budget_usd)
