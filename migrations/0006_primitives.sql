-- Agent primitives (issue 11): dynamic fan-out (map), human approval waits, durable timers, run
-- deadlines and re-runs. Every column is nullable or defaulted, so runs that use none of them look
-- exactly as before and the hot path (claim, record) reads none of the new columns.

-- A wait step sits in `waiting` until a signal (or its timeout) resolves it: no slot, no thread.
ALTER TABLE steps DROP CONSTRAINT steps_status_check;
ALTER TABLE steps ADD CONSTRAINT steps_status_check
    CHECK (status IN ('pending', 'ready', 'running', 'succeeded', 'dead_letter', 'cancelled', 'waiting'));

-- Durable timer: the step becomes claimable this long after its parents succeeded (run_at).
ALTER TABLE steps ADD COLUMN delay_seconds double precision NOT NULL DEFAULT 0;
-- A map step: expands into one child per item of its source's output `items`.
ALTER TABLE steps ADD COLUMN map_source_id bigint REFERENCES steps (id) ON DELETE CASCADE;
ALTER TABLE steps ADD COLUMN map_max_items int;
ALTER TABLE steps ADD COLUMN map_expanded boolean NOT NULL DEFAULT false;
-- A map child: its map step and its item's position (outputs are collected in this order).
ALTER TABLE steps ADD COLUMN map_parent_id bigint REFERENCES steps (id) ON DELETE CASCADE;
ALTER TABLE steps ADD COLUMN map_index int;
-- A wait step: when its wait ends by the database's clock (null: never), and what then happens.
ALTER TABLE steps ADD COLUMN wait_timeout_seconds double precision;
ALTER TABLE steps ADD COLUMN wait_expires_at timestamptz;
ALTER TABLE steps ADD COLUMN wait_on_timeout text CHECK (wait_on_timeout IN ('fail', 'continue'));
-- 'fail': a signal with "approved": false dead-letters the wait (a rejection); 'continue': it is output.
ALTER TABLE steps ADD COLUMN wait_on_reject text CHECK (wait_on_reject IN ('fail', 'continue'));

-- Recording a success looks here for map steps fed by the recorded step; empty for most runs.
CREATE INDEX steps_map_source ON steps (map_source_id) WHERE map_source_id IS NOT NULL;
-- The reaper finds expired waits without a scan.
CREATE INDEX steps_waiting ON steps (wait_expires_at) WHERE status = 'waiting';

ALTER TABLE runs ADD COLUMN deadline_at timestamptz;
ALTER TABLE runs ADD COLUMN end_reason text;  -- 'deadline' for a run failed by its deadline
ALTER TABLE runs ADD COLUMN source_run_id uuid;  -- the run this one re-runs (no FK: pruning is independent)
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE status = 'running' AND deadline_at IS NOT NULL;

-- Every signal sent to a wait step, accepted or refused: who (client address) and when.
CREATE TABLE signals (
    id         bigserial PRIMARY KEY,
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id    bigint REFERENCES steps (id) ON DELETE CASCADE,
    step_name  text NOT NULL,
    payload    jsonb NOT NULL,
    sender     text,
    accepted   boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signals_run ON signals (run_id, id);
