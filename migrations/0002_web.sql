-- What the web app keeps in Postgres besides the engine's tables.

-- Secrets shared by every web process (the session/CSRF signing key), created on first start, so
-- tokens stay valid across restarts and across web processes without any configuration.
CREATE TABLE web_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The rate limiter deletes windows that ended long ago; this finds them without a scan.
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);
