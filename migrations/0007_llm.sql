-- LLM steps for production (issue 12): streamed text, usage and cost, budgets, provider limits.
-- Every new steps column is nullable, so runs without LLM steps look exactly as before; the fast
-- claim only adds `limit_key IS NULL` to its filter (limited steps have their own claim).

-- The text an LLM step streamed, per attempt, written in batches (never a transaction per token).
-- `start_offset` is the position (in characters, Unicode code points) of `text` in the step's
-- stream, which concatenates every attempt's text in attempt order: a reader resumes at any
-- offset and gets exactly what it missed. The primary key refuses two batches at one position.
CREATE TABLE llm_stream_chunks (
    step_id      bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    start_offset int NOT NULL,
    attempt      int NOT NULL,
    text         text NOT NULL,
    -- The attempt's stream ended normally with this batch; an attempt whose last batch is not
    -- final and which is no longer running was interrupted (a killed worker, a broken stream).
    final        boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (step_id, start_offset)
);

-- Usage of one LLM attempt (the provider's own count, or the offline model's), its model, how long
-- it took, and what it cost by the price setting at the time. Runs sum these in SQL; budgets and
-- /metrics read them. An attempt whose result was later discarded still counts: it was paid for.
CREATE TABLE llm_usage (
    step_id           bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt           int NOT NULL,
    run_id            uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    model             text NOT NULL,
    prompt_tokens     int NOT NULL,
    completion_tokens int NOT NULL,
    cost_usd          numeric(14, 8) NOT NULL,
    latency_ms        double precision NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (step_id, attempt)
);
CREATE INDEX llm_usage_run ON llm_usage (run_id);

-- A run's budget (`"budget": {"tokens": N, "usd": x}`); checked before an LLM step is claimed.
CREATE TABLE run_budgets (
    run_id     uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    tokens     bigint,
    usd        numeric(14, 6),
    -- Set when the run was failed for it, in the same transaction as its `budget_exceeded` event.
    exceeded_at timestamptz
);

-- Provider limits, by name (`llm`, `llm:<model>`, or any step's `limitKey`). Limited steps are
-- claimed with their limit row locked FOR UPDATE, so concurrent claimers of one key take turns and
-- can never admit more than the limit. A null limit is no limit. The window counters are a fixed
-- window (LIMIT_WINDOW_SECONDS, a minute by default) started by its first request.
CREATE TABLE provider_limits (
    key                 text PRIMARY KEY,
    concurrency         int,
    requests_per_minute int,
    tokens_per_minute   int,
    window_start        timestamptz NOT NULL DEFAULT 'epoch',  -- no window yet
    window_requests     int NOT NULL DEFAULT 0,
    window_tokens       int NOT NULL DEFAULT 0,
    -- A 429 with Retry-After pauses the whole key until then (one `limit_paused` event per pause).
    paused_until        timestamptz,
    -- From LLM_LIMITS (rewritten at every worker start) or added by a pause; for the dashboard.
    configured          boolean NOT NULL DEFAULT false
);

-- The step's limit key (from `limitKey`, or `llm:<model>` for an LLM step); null: claimed by the
-- fast path. `limit_held` is the limit row that admitted the running attempt (its concurrency).
ALTER TABLE steps ADD COLUMN limit_key text;
ALTER TABLE steps ADD COLUMN limit_held text;
CREATE INDEX steps_ready_limited ON steps (limit_key, run_at, id) WHERE status = 'ready' AND limit_key IS NOT NULL;
CREATE INDEX steps_running_limited ON steps (limit_held) WHERE status = 'running' AND limit_held IS NOT NULL;
