"""The Postgres server the benchmarks share: a throwaway cluster of our own (fsync on, synchronous
commit on, otherwise default settings), or the server of `DATABASE_URL`. Every benchmark gets a
fresh database on it, so no run sees another's rows or dead tuples.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from engine.migrate import migrate
from engine.pgcluster import PgCluster

TEMPLATE_DB = "dae_bench_template"


@dataclass
class DatabaseInfo:
    version: str
    fsync: str
    synchronous_commit: str
    shared_buffers: str
    track_commit_timestamp: str


class BenchServer:
    """`start()` brings the server up; `fresh_database()` gives a new database (migrated with our
    schema unless `migrated=False`); `close()` drops what was created and stops our cluster."""

    def __init__(self, database_url: str | None = None) -> None:
        self.external_url = database_url
        self.cluster: PgCluster | None = None
        self.admin_url = ""
        self.created: list[str] = []

    def start(self) -> BenchServer:
        if self.external_url:
            self.admin_url = self.external_url
        else:
            self.cluster = PgCluster(fsync=True).init().start()
            self.admin_url = self.cluster.url()
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        self.created.append(TEMPLATE_DB)
        migrate(self.url(TEMPLATE_DB))
        return self

    @property
    def owned(self) -> bool:
        """True when the cluster is ours (we may restart it and read its processes)."""
        return self.cluster is not None

    def url(self, dbname: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))

    def fresh_database(self, label: str, migrated: bool = True) -> str:
        name = f"dae_bench_{label}_{uuid.uuid4().hex[:8]}"
        template = f" TEMPLATE {TEMPLATE_DB}" if migrated else ""
        with self._admin() as conn:
            conn.execute(f"CREATE DATABASE {name}{template}")
        self.created.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self.created:
            self.created.remove(name)

    def enable_commit_timestamps(self) -> bool:
        """Latency figures are honest only from the commit itself, which `now()` (the transaction's
        start) is not: `track_commit_timestamp` records when each transaction committed. We can turn
        it on (a restart) only on our own cluster; on `DATABASE_URL` it is used if already on."""
        if self.info().track_commit_timestamp == "on":
            return True
        if not self.owned:
            return False
        assert self.cluster is not None
        with self._admin() as conn:
            conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        self.cluster.restart(mode="fast")
        return self.info().track_commit_timestamp == "on"

    def info(self) -> DatabaseInfo:
        with self._admin() as conn:
            values = [conn.execute(f"SHOW {name}").fetchone()[0] for name in
                      ("server_version", "fsync", "synchronous_commit", "shared_buffers", "track_commit_timestamp")]
        return DatabaseInfo(*values)

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid on our own cluster (its children are the whole server)."""
        if self.cluster is None:
            return None
        pid_file = Path(self.cluster.datadir) / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        for name in list(self.created):
            try:
                with self._admin() as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except psycopg.Error:
                pass  # best effort: a throwaway cluster is removed anyway
        self.created.clear()
        if self.cluster is not None:
            self.cluster.destroy()
            self.cluster = None

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)


def database_url_from_env() -> str | None:
    return os.environ.get("DATABASE_URL") or None
