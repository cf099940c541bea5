"""The worker process (`python -m worker`): claims steps from Postgres, runs them in slots,
heartbeats their leases, reaps dead workers' steps, and records every outcome with fencing."""
