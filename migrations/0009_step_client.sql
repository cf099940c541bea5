-- The web client a step's run belongs to, copied onto the step when it is created (runs.client
-- never changes). The claim's fair share (MAX_RUNNING_STEPS_PER_CLIENT, engine/store/steps.py)
-- counts running steps per client on every claim: joined to runs, that was an index scan of every
-- running step plus a probe of runs for each (0.6 ms of a 2 ms claim of 32 steps with 64 running,
-- measured with auto_explain), and a probe of runs for every candidate step. With the client on
-- the step, the count reads only web clients' running steps, from a small partial index.
ALTER TABLE steps ADD COLUMN client text;
UPDATE steps s SET client = r.client FROM runs r WHERE r.id = s.run_id AND r.client IS NOT NULL;
CREATE INDEX steps_running_client ON steps (client) WHERE status = 'running' AND client IS NOT NULL;
