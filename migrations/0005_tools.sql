-- Users' tools and routing (README "Write your own tools").

-- Each worker incarnation advertises the tools it offers when it registers. The claim statement
-- takes the claiming worker's list as a parameter (it never reads this column); the column is what
-- the API reads to say why a ready step waits ("no live worker offers tool `x`").
ALTER TABLE workers ADD COLUMN tools text[] NOT NULL DEFAULT '{}';

-- Every tool any worker has offered, with the defaults its `@tool(...)` declared. Submission checks
-- tool names against this small table (plus the built-ins) and fills a step's missing maxAttempts,
-- timeoutSeconds and backoff from it, so a client need not import the tools' code. The latest
-- registration wins when two workers declare different defaults for one name.
CREATE TABLE tools (
    name            text PRIMARY KEY,
    max_attempts    int CHECK (max_attempts BETWEEN 1 AND 100),
    timeout_seconds float8 CHECK (timeout_seconds > 0),
    backoff_base    float8 CHECK (backoff_base >= 0),
    backoff_max     float8 CHECK (backoff_max >= 0),
    offered_at      timestamptz NOT NULL DEFAULT now()
);
