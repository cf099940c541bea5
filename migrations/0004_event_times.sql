-- Infrastructure faults must not distort what a user sees (issue 17).

-- An audit row's time is when the event happened, not when its transaction began. now() is the
-- transaction's start: a claim that waited on its parent's run lock wrote a child's step_started
-- with a time before the parent's step_succeeded, so ordering the log or drawing the timeline by
-- time showed a child starting before its parent finished. clock_timestamp() is read per row, at
-- the insert, so a row written after another transaction's commit is always later than that
-- transaction's rows; `engine verify` checks this for dependent events.
ALTER TABLE audit_log ALTER COLUMN created_at SET DEFAULT clock_timestamp();

-- When the worker last took its liveness lock: at registration, and again after every reconnect.
-- After a Postgres restart, a worker whose lock was re-taken since the postmaster started and is
-- free again is dead at once; only workers that have not re-taken theirs yet get a grace period
-- (engine/store/recovery.py).
ALTER TABLE workers ADD COLUMN lock_taken_at timestamptz;
UPDATE workers SET lock_taken_at = started_at;
ALTER TABLE workers ALTER COLUMN lock_taken_at SET DEFAULT now(),
                    ALTER COLUMN lock_taken_at SET NOT NULL;
