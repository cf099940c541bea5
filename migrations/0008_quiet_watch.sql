-- The watcher's bounded wait for another worker's liveness lock (engine/store/watch.py), without
-- an ERROR in the server log. Bounded by lock_timeout alone, every wait that ends with the watched
-- worker still alive made Postgres log "ERROR: canceling statement due to lock timeout" (every
-- 2 s per worker): noise in the appliance's log and in a user's. An error caught by a PL/pgSQL
-- EXCEPTION block is not reported, so here the timeout becomes `false`.
--
-- True: the lock was free, or was freed while waiting (its owner's session ended). The lock is a
-- transaction-level one, released when the calling statement's transaction ends: the point is only
-- to be woken. `timeout` is a lock_timeout value ('2000ms'), local to the caller's transaction.
-- The EXCEPTION block costs a subtransaction per wait (one every 2 s per worker; it writes nothing,
-- so it takes no transaction id).
CREATE FUNCTION advisory_xact_lock_wait(lock_class int, lock_key int, timeout text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('lock_timeout', timeout, true);
    PERFORM pg_advisory_xact_lock(lock_class, lock_key);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;
