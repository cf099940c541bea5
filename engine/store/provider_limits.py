"""Provider limits (`llm`, `llm:<model>`, any `limitKey`): concurrency, requests and tokens per
window, and pauses after a 429. Enforced in the claim of limited steps.

A step's key finds its limit row by exact name, else by the part before the first `:` (so limit
`llm` covers `llm:gpt-4o` unless that has its own row); a key with neither is unlimited. The claim
locks the limit rows FOR UPDATE (in key order, so two claimers never deadlock), then counts in a
fresh statement: under READ COMMITTED each statement sees every claim committed before the lock
was granted, so concurrent claimers on all workers take turns and never over-admit. Steps over the
limit stay `ready`; their attempts are untouched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.model import ProviderLimit
from engine.store.budgets import OVER_BUDGET_FILTER, runs_fail_over_budget
from engine.store.errors import translated
from engine.store.notify import notify_after_commit
from engine.store.steps import CLAIM_RESULT, CLIENTS_AT_CAP, PARENT_BYTES_UNLIMITED, TOOL_FILTER, ClaimedStep

LIMIT_FIELDS = {"concurrency": "concurrency", "requestsPerMinute": "requests_per_minute",
                "tokensPerMinute": "tokens_per_minute"}
CONCURRENCY_RECHECK_SECONDS = 0.25  # a slot of a full key frees when another worker finishes

# One cheap look (the partial index steps_ready_limited) before any transaction: most claim loops
# find no limited step at all, and then cost one round trip.
_LOOK = ("SELECT coalesce(bool_or(run_at <= now()), false) AS found, "
         "extract(epoch FROM min(run_at) - now())::float8 AS wait "
         "FROM steps WHERE status = 'ready' AND limit_key IS NOT NULL AND " + TOOL_FILTER)

_KEYS = """
SELECT k.key, coalesce(exact.key, family.key) AS limit_name
FROM (SELECT DISTINCT limit_key AS key FROM steps
      WHERE status = 'ready' AND limit_key IS NOT NULL AND run_at <= now() AND """ + TOOL_FILTER + """) k
LEFT JOIN provider_limits exact ON exact.key = k.key
LEFT JOIN provider_limits family ON family.key = split_part(k.key, ':', 1)
"""

_LOCK = """
SELECT key, concurrency, requests_per_minute, tokens_per_minute,
       window_start + make_interval(secs => %(window)s) <= now() AS window_over,
       window_requests, window_tokens,
       greatest(extract(epoch FROM paused_until - now()), 0)::float8 AS paused_for,
       extract(epoch FROM window_start + make_interval(secs => %(window)s) - now())::float8 AS window_left
FROM provider_limits WHERE key = ANY(%(names)s) ORDER BY key FOR UPDATE
"""

_RUNNING = """
SELECT limit_held AS key, count(*)::int AS n FROM steps
WHERE status = 'running' AND limit_held = ANY(%(names)s) GROUP BY limit_held
"""

_CLAIM = f"""
WITH picked AS (
    SELECT s.id FROM steps s
    WHERE s.status = 'ready' AND s.run_at <= now() AND s.limit_key = ANY(%(keys)s) AND {TOOL_FILTER}
      AND NOT (s.kind = 'llm_call' AND EXISTS (SELECT 1 FROM run_budgets b WHERE b.run_id = s.run_id AND {OVER_BUDGET_FILTER}))
      -- MAX_RUNNING_STEPS_PER_CLIENT (steps.py): a web client at its cap gets no limited step either.
      -- Checked per candidate, not per batch: a client under the cap can pass it by this batch.
      AND NOT (%(client_cap)s > 0 AND s.client IS NOT NULL AND s.client IN ({CLIENTS_AT_CAP}))
    ORDER BY s.run_at, s.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE steps s
    SET status = 'running', attempt = s.attempt + 1, lease_owner = %(worker)s,
        lease_worker_id = %(worker_id)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
        started_at = now(), limit_held = %(held)s
    FROM picked WHERE s.id = picked.id
    RETURNING s.id, s.run_id, s.name, s.kind, s.tool, s.input, s.attempt, s.attempt_limit,
              s.timeout_seconds, s.backoff_base, s.backoff_max, coalesce(%(held)s, s.limit_key) AS limit_key
), started AS (
    -- Timed when written (the column's default, clock_timestamp()): after the limit's lock was
    -- granted and its use counted, so an admitted step's start is after the end of the step whose
    -- slot it took, and the audit intervals of a key show exactly what the limit allowed.
    INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail)
    SELECT run_id, id, %(worker)s, 'step_started', attempt, jsonb_build_object('limitKey', limit_key)
    FROM claimed ORDER BY id
""" + CLAIM_RESULT  # parents within MAX_PARENT_BYTES and the run's output bytes, as the plain claim

_COUNT_WINDOW = """
UPDATE provider_limits SET
    -- A new window starts after the claims that open it (clock_timestamp): the next window's first
    -- request is at least a window length after this one's first.
    window_start = CASE WHEN %(reset)s THEN clock_timestamp() ELSE window_start END,
    window_requests = CASE WHEN %(reset)s THEN 0 ELSE window_requests END + %(n)s,
    window_tokens = CASE WHEN %(reset)s THEN 0 ELSE window_tokens END
WHERE key = %(key)s
"""



@dataclass(frozen=True)
class LimitedClaim:
    """Claimed steps, and how long until a limited step that is still waiting may be admitted
    (None: none is waiting), so an idle worker sleeps that long instead of spinning."""
    steps: list[ClaimedStep]
    wait_seconds: float | None


def _available(row: dict, running: int, slots: int) -> tuple[int, float]:
    """(steps this limit admits now, seconds until it may admit more than that)."""
    if row["paused_for"] > 0:
        return 0, row["paused_for"]
    requests, tokens = (0, 0) if row["window_over"] else (row["window_requests"], row["window_tokens"])
    free = slots
    wait = CONCURRENCY_RECHECK_SECONDS
    if row["concurrency"] is not None:
        free = min(free, row["concurrency"] - running)
    if row["requests_per_minute"] is not None and row["requests_per_minute"] - requests < free:
        free, wait = row["requests_per_minute"] - requests, max(row["window_left"], 0.005)
    if row["tokens_per_minute"] is not None and tokens >= row["tokens_per_minute"]:
        free, wait = 0, max(row["window_left"], 0.005)
    return max(0, free), wait


@translated
def step_claim_limited(conn: psycopg.Connection, worker: str, worker_id: int, slots: int, lease_seconds: float,
                       window_seconds: float, parent_bytes: int = PARENT_BYTES_UNLIMITED,
                       client_cap: int = 0, tools: list[str] | None = None) -> LimitedClaim:
    """Claim up to `slots` steps that have a limit key, within their limits, in one transaction;
    first fail runs over budget so that none of their LLM steps starts. With `tools`, only steps
    whose tool is in it (or that have none) are looked at and claimed, as in `step_claim`."""
    if slots <= 0:
        return LimitedClaim([], None)
    look = conn.execute(_LOOK, {"tools": tools}).fetchone()
    if not look["found"]:
        return LimitedClaim([], None if look["wait"] is None else max(0.005, look["wait"]))
    claimed: list[ClaimedStep] = []
    waits: list[float] = []
    with conn.transaction():
        runs_fail_over_budget(conn, worker)
        keys = conn.execute(_KEYS, {"tools": tools}).fetchall()
        groups: dict[str | None, list[str]] = {}
        for row in keys:
            groups.setdefault(row["limit_name"], []).append(row["key"])
        names = sorted(name for name in groups if name is not None)
        locked = {r["key"]: r for r in conn.execute(_LOCK, {"names": names, "window": window_seconds}).fetchall()}
        running = {r["key"]: r["n"] for r in conn.execute(_RUNNING, {"names": names}).fetchall()}
        for name in [None, *names]:  # unlimited keys first: they cost no limit
            if name not in groups or slots - len(claimed) <= 0:
                continue
            admit = slots - len(claimed)
            if name is not None:
                wanted = admit
                admit, wait = _available(locked[name], running.get(name, 0), wanted)
                if admit < wanted:  # held back by the limit: look again when it may admit more
                    waits.append(wait)
                if admit == 0:
                    continue
            rows = conn.execute(_CLAIM, {"keys": groups[name], "limit": admit, "worker": worker,
                                         "worker_id": worker_id, "lease": lease_seconds, "held": name,
                                         "parent_bytes": parent_bytes, "client_cap": client_cap,
                                         "tools": tools}).fetchall()
            claimed.extend(ClaimedStep(**row) for row in rows)
            if name is not None and (rows or locked[name]["window_over"]):
                conn.execute(_COUNT_WINDOW, {"reset": locked[name]["window_over"], "n": len(rows), "key": name})
    later = conn.execute(_LOOK, {"tools": tools}).fetchone()["wait"]
    wait = min([*waits, *([later] if later is not None and later > 0 else [])], default=None)
    return LimitedClaim(claimed, wait)


# -- pauses --------------------------------------------------------------------------------------

# The row is created for a key that has no limit, so its pause still holds. The pause is only
# extended (greatest), and the event is written only by the pause that found the key unpaused
# (pausers of one key take turns on a transaction advisory lock, the row may not exist yet).
_PAUSE = """
INSERT INTO provider_limits AS l (key, paused_until) VALUES (%(key)s, now() + make_interval(secs => %(secs)s))
ON CONFLICT (key) DO UPDATE SET paused_until = greatest(l.paused_until, excluded.paused_until)
RETURNING paused_until
"""

_REFUND = """
UPDATE steps SET attempt_limit = attempt_limit + 1
WHERE id = %(step)s AND attempt = %(attempt)s AND status = 'running'
RETURNING id
"""


@translated
def limit_pause(conn: psycopg.Connection, key: str, seconds: float, run_id: UUID, step_id: int, attempt: int,
                worker: str | None = None) -> bool:
    """Pause `key` for `seconds` (a 429 with Retry-After) and give the attempt that hit it back.
    Returns True when this call started the pause (and wrote the one `limit_paused` event)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('dae_limit_pause:' || %s))", (key,))
        before = conn.execute("SELECT paused_until > now() AS paused FROM provider_limits WHERE key = %s",
                              (key,)).fetchone()
        # The step row before the limit row: the order of the claim (budgets cancel steps, then
        # limits are locked), so the two can never wait for each other.
        conn.execute(_REFUND, {"step": step_id, "attempt": attempt})
        row = conn.execute(_PAUSE, {"key": key, "secs": seconds}).fetchone()
        started = not (before and before["paused"])
        if started:
            conn.execute("INSERT INTO audit_log (run_id, step_id, worker, event, attempt, detail) "
                         "VALUES (%s, %s, %s, 'limit_paused', %s, %s)",
                         (run_id, step_id, worker, attempt,
                          Jsonb({"key": key, "retryAfterSeconds": seconds, "until": row["paused_until"].isoformat()})))
    if started:
        notify_after_commit(conn, steps_ready=False)
    return started


# -- configuration and the dashboard ---------------------------------------------------------------

def parse_limits(spec: str) -> dict[str, dict[str, int | None]]:
    """LLM_LIMITS (JSON object of key → {concurrency, requestsPerMinute, tokensPerMinute})."""
    if not spec.strip():
        return {}
    try:
        raw = json.loads(spec)
    except ValueError as exc:
        raise ValueError(f"LLM_LIMITS is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("LLM_LIMITS must be a JSON object of limit key → limits")
    limits = {}
    for key, values in raw.items():
        if not isinstance(values, dict) or set(values) - set(LIMIT_FIELDS):
            raise ValueError(f"LLM_LIMITS[{key!r}] must be an object with {', '.join(LIMIT_FIELDS)}")
        if any(v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0) for v in values.values()):
            raise ValueError(f"LLM_LIMITS[{key!r}]: limits are non-negative integers (or null)")
        limits[str(key)] = {column: values.get(name) for name, column in LIMIT_FIELDS.items()}
    return limits


@translated
def limits_configure(conn: psycopg.Connection, limits: dict[str, dict[str, int | None]]) -> None:
    """Write the configured limits (a worker does this at start; use the same LLM_LIMITS everywhere)."""
    for key, values in sorted(limits.items()):
        conn.execute("INSERT INTO provider_limits (key, concurrency, requests_per_minute, tokens_per_minute, configured) "
                     "VALUES (%(key)s, %(concurrency)s, %(requests_per_minute)s, %(tokens_per_minute)s, true) "
                     "ON CONFLICT (key) DO UPDATE SET concurrency = excluded.concurrency, "
                     "requests_per_minute = excluded.requests_per_minute, "
                     "tokens_per_minute = excluded.tokens_per_minute, configured = true", {"key": key, **values})


@translated
def limits_list(conn: psycopg.Connection, window_seconds: float) -> list[ProviderLimit]:
    """Every limit with its use now: running steps it admitted, ready steps that wait under it,
    this window's requests and tokens, and how long it stays paused."""
    rows = conn.execute(
        """
        SELECT l.key, l.concurrency, l.requests_per_minute, l.tokens_per_minute,
               (SELECT count(*) FROM steps s WHERE s.status = 'running' AND s.limit_held = l.key)::int AS running,
               (SELECT count(*) FROM steps s WHERE s.status = 'ready' AND s.limit_key IS NOT NULL
                  AND (s.limit_key = l.key OR (split_part(s.limit_key, ':', 1) = l.key
                       AND NOT EXISTS (SELECT 1 FROM provider_limits e WHERE e.key = s.limit_key))))::int AS waiting,
               CASE WHEN l.window_start + make_interval(secs => %(window)s) > now() THEN l.window_requests ELSE 0 END AS requests,
               CASE WHEN l.window_start + make_interval(secs => %(window)s) > now() THEN l.window_tokens ELSE 0 END AS tokens,
               greatest(coalesce(extract(epoch FROM l.paused_until - now()), 0), 0)::float8 AS paused
        FROM provider_limits l ORDER BY l.key
        """, {"window": window_seconds}).fetchall()
    return [ProviderLimit(r["key"], r["concurrency"], r["requests_per_minute"], r["tokens_per_minute"], r["running"],
                          r["waiting"], r["requests"], r["tokens"], r["paused"]) for r in rows]
