-- The whole schema of the engine. Postgres is the queue, the lock service, the event bus and the
-- audit trail, so every table here is read or written on the hot path; the comments say why each
-- column and index exists.

-- A run is a DAG of steps submitted together.
CREATE TABLE runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- not guessable: public demo
    goal            text NOT NULL,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    -- A repeated submission with the same key returns this run instead of creating another.
    idempotency_key text UNIQUE,
    -- Hash of the normalised request, so the same key with a different body is refused.
    request_hash    text NOT NULL,
    client          text,  -- who submitted it (web client address), for per-client caps
    step_count      int NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX runs_active ON runs (client) WHERE status = 'running';
-- Pruning finds finished runs by age.
CREATE INDEX runs_finished_at ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_created_at ON runs (created_at DESC);

CREATE TABLE steps (
    id               bigserial PRIMARY KEY,
    run_id           uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name             text NOT NULL,              -- `kind.label`, unique within its run
    kind             text NOT NULL,              -- tool_call | llm_call
    tool             text,                       -- for tool_call: input.tool
    input            jsonb NOT NULL,
    status           text NOT NULL
                     CHECK (status IN ('pending', 'ready', 'running', 'succeeded', 'dead_letter',
                                       'cancelled')),
    -- The fencing token: bumped by every claim, never reset; writes of an older attempt match nothing.
    attempt          int NOT NULL DEFAULT 0,
    max_attempts     int NOT NULL,
    -- Highest attempt number allowed; a redrive raises it by max_attempts.
    attempt_limit    int NOT NULL,
    timeout_seconds  double precision NOT NULL,
    backoff_base     double precision NOT NULL,
    backoff_max      double precision NOT NULL,
    -- Unfinished parents; the step becomes ready when this reaches 0 (no scan of the run).
    pending_deps     int NOT NULL,
    run_at           timestamptz NOT NULL DEFAULT now(),  -- not before (retry backoff)
    lease_owner      text,                       -- worker name of the current attempt
    lease_worker_id  bigint,                     -- its incarnation: the liveness lock key
    lease_expires_at timestamptz,
    reclaims         int NOT NULL DEFAULT 0,     -- crashes of workers running this step
    output           jsonb,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    UNIQUE (run_id, name)
);
-- The claim query: WHERE status = 'ready' AND run_at <= now() ORDER BY run_at, id. Same key order
-- as the ORDER BY, or the planner walks the primary key and throughput collapses as dead rows pile up.
CREATE INDEX steps_ready ON steps (run_at, id) WHERE status = 'ready';
-- The reaper: owners of running steps, and expired leases.
CREATE INDEX steps_running_owner ON steps (lease_worker_id) WHERE status = 'running';
CREATE INDEX steps_running_lease ON steps (lease_expires_at) WHERE status = 'running';
CREATE INDEX steps_dead_letter ON steps (finished_at DESC) WHERE status = 'dead_letter';

-- Edges of the DAG. Children of a finished step are found through depends_on, never by scanning.
CREATE TABLE step_deps (
    step_id    bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    depends_on bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    PRIMARY KEY (step_id, depends_on)
);
CREATE INDEX step_deps_depends_on ON step_deps (depends_on);

-- One row per state transition, written in the same transaction as the transition. Replaying a
-- run's rows reproduces its steps' final states. run_id is null for worker lifecycle events.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    run_id     uuid REFERENCES runs (id) ON DELETE CASCADE,
    step_id    bigint,
    worker     text,
    event      text NOT NULL,
    attempt    int,
    detail     jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_run ON audit_log (run_id, id);

-- One row per worker process start (incarnation). The liveness advisory lock is keyed by id.
CREATE TABLE workers (
    id         bigserial PRIMARY KEY,            -- the incarnation
    name       text NOT NULL,
    host       text NOT NULL,
    pid        int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    status     text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped', 'lost'))
);
CREATE INDEX workers_name ON workers (name, id DESC);

-- `notify` tool: one row per idempotency key, so the side effect happens once per step.
CREATE TABLE notifications (
    idempotency_key text PRIMARY KEY,
    run_id          uuid REFERENCES runs (id) ON DELETE CASCADE,
    message         text NOT NULL,
    attempt         int NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Fixed-window request counters per client and action, shared by every web process.
CREATE TABLE rate_limits (
    client       text NOT NULL,
    action       text NOT NULL,
    window_start timestamptz NOT NULL,
    hits         int NOT NULL,
    PRIMARY KEY (client, action, window_start)
);
