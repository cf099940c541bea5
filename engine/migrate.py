"""Applies the numbered SQL files of `migrations/` in order, once each.

`python -m engine.migrate` is safe to run concurrently: a session advisory lock serialises runners,
so the second one waits and then finds nothing pending. `--check` exits 0 when the database is up
to date and 3 when something is pending (the appliance's wait step polls it).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import psycopg

from engine.config import Settings

# migrations/ of the checkout; `pip install .` ships the same files as engine/_migrations.
MIGRATIONS_DIR = next(d for d in (Path(__file__).resolve().parent.parent / "migrations",
                                  Path(__file__).resolve().parent / "_migrations") if d.is_dir())
MIGRATION_LOCK_KEY = 7_341_001  # arbitrary, constant: the advisory lock that serialises runners
EXIT_PENDING = 3

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    """(version, path) of every `NNNN_name.sql`, in order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.match(r"^(\d{4})_[\w-]+\.sql$", path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append((path.stem, path))
    return found


def applied_versions(conn: psycopg.Connection) -> set[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending_migrations(database_url: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        done = applied_versions(conn)
    return [version for version, _ in available_migrations() if version not in done]


def migrate(database_url: str) -> list[str]:
    """Apply what is pending; returns the versions this call applied."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            done = applied_versions(conn)
            for version, path in available_migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[arg-type]  # trusted repo file
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.migrate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 3 if migrations are pending")
    args = parser.parse_args(argv)
    url = Settings.from_env().database_url
    try:
        if args.check:
            pending = pending_migrations(url)
            if pending:
                print("pending: " + ", ".join(pending), file=sys.stderr)
                return EXIT_PENDING
            return 0
        for version in migrate(url):
            print(f"applied {version}")
    except psycopg.OperationalError as exc:
        print(f"database unavailable: {exc}".strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
