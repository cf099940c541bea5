"""Streamed LLM text and LLM usage: append a batch of an attempt's text (fenced), read a step's
stream from a character offset, sum usage per step, run and model.

A step's stream is every attempt's text one after the other; each batch row knows its attempt and
its start offset, so a reader asks "from offset N" and gets exactly what it has not seen yet.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.model import RunUsage, StepStatus, StepStream, StreamPart, StreamState, Usage
from engine.store.errors import translated

STREAM_CHANNEL = "dae_stream"

# FOR SHARE on the step row, fenced by attempt and status: a reclaim (or completion) of the step
# waits until this batch commits, and a batch of an attempt that was taken away matches nothing.
# So one attempt's batches all precede the next attempt's, and offsets never overlap.
_APPEND = """
WITH fence AS (
    SELECT id FROM steps WHERE id = %(step)s AND attempt = %(attempt)s AND status = 'running' FOR SHARE
), pos AS (
    SELECT coalesce((SELECT start_offset + char_length(text) FROM llm_stream_chunks
                     WHERE step_id = %(step)s ORDER BY start_offset DESC LIMIT 1), 0) AS start
)
INSERT INTO llm_stream_chunks (step_id, start_offset, attempt, text, final)
SELECT %(step)s, pos.start, %(attempt)s, %(text)s, %(final)s FROM fence, pos
RETURNING start_offset + char_length(text) AS end_offset
"""

# An empty final batch marks the attempt's last batch instead of adding a zero-length row.
_MARK_FINAL = """
UPDATE llm_stream_chunks c SET final = true
FROM steps s
WHERE s.id = %(step)s AND s.attempt = %(attempt)s AND s.status = 'running'
  AND c.step_id = %(step)s AND c.attempt = %(attempt)s
  AND c.start_offset = (SELECT max(start_offset) FROM llm_stream_chunks
                        WHERE step_id = %(step)s AND attempt = %(attempt)s)
RETURNING c.start_offset + char_length(c.text) AS end_offset
"""

_NOTIFY = "SELECT set_config('synchronous_commit', 'off', true), pg_notify('dae_stream', %(run)s)"

# bigint: a reader may ask from any offset its request allows (10 digits), even past the end.
_READ = """
SELECT c.step_id, c.attempt, c.start_offset, c.text, c.final
FROM llm_stream_chunks c
WHERE c.step_id = ANY(%(steps)s)
  AND c.start_offset + char_length(c.text) > coalesce((%(offsets)s::jsonb ->> c.step_id::text)::bigint, 0)
ORDER BY c.step_id, c.start_offset
"""

_STEPS = "SELECT id, run_id, name, status, attempt FROM steps WHERE {where} ORDER BY id"


@translated
def stream_append(conn: psycopg.Connection, run_id: UUID, step_id: int, attempt: int, text: str,
                  final: bool = False) -> int | None:
    """Store one batch of an attempt's text, then announce it (after the commit, as its own cheap
    transaction). Returns the stream's end offset, or None when the attempt no longer holds the step."""
    params = {"step": step_id, "attempt": attempt, "text": text, "final": final}
    with conn.transaction():
        row = conn.execute(_APPEND if text else _MARK_FINAL, params).fetchone()
    if row is not None:
        conn.execute(_NOTIFY, {"run": str(run_id)})
    return row["end_offset"] if row else None


@translated
def stream_read(conn: psycopg.Connection, step_ids: Iterable[int] | None = None, run_id: UUID | None = None,
                offsets: dict[int, int] | None = None) -> list[StepStream]:
    """The streams of the given steps (or of every step of a run that streamed), each from its
    offset in `offsets` (0 when absent)."""
    if run_id is not None:
        steps = conn.execute(_STEPS.format(where="run_id = %s AND kind = 'llm_call'"), (run_id,)).fetchall()
    else:
        steps = conn.execute(_STEPS.format(where="id = ANY(%s)"), (list(step_ids or []),)).fetchall()
    offsets = offsets or {}
    rows = conn.execute(_READ, {"steps": [s["id"] for s in steps],
                                "offsets": Jsonb({str(k): v for k, v in offsets.items()})}).fetchall()
    by_step: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_step.setdefault(row["step_id"], []).append(row)
    return [_stream(step, offsets.get(step["id"], 0), by_step.get(step["id"], [])) for step in steps]


def _stream(step: dict[str, Any], offset: int, rows: list[dict[str, Any]]) -> StepStream:
    status = StepStatus(step["status"])
    finals = {r["attempt"] for r in rows if r["final"]}
    parts: list[StreamPart] = []
    for row in rows:
        start, text = row["start_offset"], row["text"]
        if start < offset:  # the reader has the beginning of this batch already
            text, start = text[offset - start:], offset
        if parts and parts[-1].attempt == row["attempt"] and parts[-1].end == start:
            last = parts.pop()
            text, start = last.text + text, last.offset
        parts.append(StreamPart(step["id"], row["attempt"], start, text,
                                _state(row["attempt"], finals, step["attempt"], status)))
    return StepStream(step_id=step["id"], run_id=step["run_id"], step=step["name"], status=status,
                      attempt=step["attempt"], offset=offset, parts=tuple(parts))


def _state(attempt: int, finals: set[int], current: int, status: StepStatus) -> StreamState:
    if attempt in finals:
        return StreamState.COMPLETE
    if attempt == current and status == StepStatus.RUNNING:
        return StreamState.STREAMING
    return StreamState.INTERRUPTED


# -- usage -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UsageRecord:
    """What one LLM attempt used, as the handler measured it."""
    run_id: UUID
    step_id: int
    attempt: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    limit_key: str | None = None


_RECORD_USAGE = """
WITH usage AS (
    INSERT INTO llm_usage (step_id, attempt, run_id, model, prompt_tokens, completion_tokens, cost_usd, latency_ms)
    VALUES (%(step)s, %(attempt)s, %(run)s, %(model)s, %(prompt)s, %(completion)s, %(cost)s, %(latency)s)
    ON CONFLICT (step_id, attempt) DO NOTHING
    RETURNING prompt_tokens + completion_tokens AS tokens
)
-- tokensPerMinute counts the tokens of the window the limit is in (claims check it before admitting).
UPDATE provider_limits l SET window_tokens = l.window_tokens + usage.tokens
FROM usage, steps s
WHERE s.id = %(step)s AND l.key = s.limit_held
"""


@translated
def llm_usage_record(conn: psycopg.Connection, usage: UsageRecord) -> None:
    """Record an attempt's usage once (a repeated record of the same attempt is ignored)."""
    with conn.transaction():
        conn.execute(_RECORD_USAGE, {"step": usage.step_id, "attempt": usage.attempt, "run": usage.run_id,
                                     "model": usage.model, "prompt": usage.prompt_tokens,
                                     "completion": usage.completion_tokens, "cost": Decimal(f"{usage.cost_usd:.8f}"),
                                     "latency": usage.latency_ms})


_RUN_USAGE = """
SELECT step_id, sum(prompt_tokens)::bigint AS prompt, sum(completion_tokens)::bigint AS completion,
       sum(cost_usd)::float8 AS cost, count(*)::int AS calls,
       (array_agg(latency_ms ORDER BY attempt DESC))[1] AS latency,
       (array_agg(model ORDER BY attempt DESC))[1] AS model
FROM llm_usage WHERE run_id = %s GROUP BY ROLLUP (step_id)
"""


@translated
def run_usage(conn: psycopg.Connection, run_id: UUID) -> RunUsage:
    """The run's usage per step and in total (one GROUP BY ROLLUP), and its budget."""
    total, steps = Usage(), {}
    for row in conn.execute(_RUN_USAGE, (run_id,)).fetchall():
        usage = Usage(int(row["prompt"] or 0), int(row["completion"] or 0), float(row["cost"] or 0),
                      row["calls"], float(row["latency"] or 0), row["model"])
        if row["step_id"] is None:
            total = usage
        else:
            steps[row["step_id"]] = usage
    budget = conn.execute("SELECT tokens, usd::float8 AS usd, exceeded_at FROM run_budgets WHERE run_id = %s",
                          (run_id,)).fetchone()
    return RunUsage(total=total, steps=steps, budget_tokens=budget["tokens"] if budget else None,
                    budget_usd=budget["usd"] if budget else None,
                    budget_exceeded=bool(budget and budget["exceeded_at"]))


@translated
def usage_by_model(conn: psycopg.Connection) -> list[Usage]:
    """Totals per model over every stored attempt (the /metrics counters)."""
    rows = conn.execute("SELECT model, sum(prompt_tokens)::bigint AS prompt, sum(completion_tokens)::bigint AS completion, "
                        "sum(cost_usd)::float8 AS cost, count(*)::int AS calls, sum(latency_ms) AS latency "
                        "FROM llm_usage GROUP BY model ORDER BY model").fetchall()
    return [Usage(int(r["prompt"]), int(r["completion"]), float(r["cost"]), r["calls"], float(r["latency"]), r["model"])
            for r in rows]
