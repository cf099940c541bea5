"""Migrations and housekeeping."""
from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from engine import store
from engine.migrate import EXIT_PENDING, available_migrations
from engine.store.maintenance import runs_prune
from engine.submit import submit_run
from tests.helpers import ROOT, chain, wait_for


def migrate_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.migrate", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url}, timeout=60)


def test_concurrent_migrations_apply_each_file_once(pg):
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migrate_race WITH (FORCE)")
        admin.execute("CREATE DATABASE migrate_race")
    url = pg.url("migrate_race")
    assert migrate_cli(url, "--check").returncode == EXIT_PENDING
    procs = [subprocess.Popen([sys.executable, "-m", "engine.migrate"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "DATABASE_URL": url}) for _ in range(4)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    applied = [line for out in outputs for line in out.splitlines() if line.startswith("applied")]
    assert len(applied) == len(available_migrations())  # each file applied by exactly one runner
    assert migrate_cli(url, "--check").returncode == 0
    assert migrate_cli(url).stdout == ""  # nothing left to do


def test_prune_deletes_only_finished_runs_past_retention(conn, settings, spawn):
    old, _ = submit_run(conn, chain(2), settings)
    fresh, _ = submit_run(conn, chain(2), settings)
    running, _ = submit_run(conn, chain(1) | {"goal": "still running"}, settings)
    store.run_cancel(conn, running)  # a finished run that is recent
    spawn("w1")
    wait_for(lambda: all(store.run_get(conn, r).status == "completed" for r in (old, fresh)), 30, "runs done")
    conn.execute("UPDATE runs SET finished_at = now() - interval '48 hours' WHERE id = %s", (old,))
    assert runs_prune(conn, retention_hours=24) == 1
    assert set(store.run_ids(conn)) == {str(fresh), str(running)}
    assert conn.execute("SELECT count(*) AS n FROM audit_log WHERE run_id = %s", (old,)).fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM steps WHERE run_id = %s", (old,)).fetchone()["n"] == 0
    assert runs_prune(conn, retention_hours=0) == 0  # 0 keeps everything
