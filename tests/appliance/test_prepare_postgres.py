"""scripts/appliance/prepare-postgres after an unclean stop, on this host (the image runs the same
script on every boot; scripts/image-test repeats this inside the container).

Issue 15, defect 2: Postgres leaves postmaster.pid behind when it is SIGKILLed. In a fresh container
the PIDs are almost the same on every boot, so the PID in that file can belong to another live
process of the same user; Postgres then refuses to start ("lock file ... already exists") and the
appliance exits 1 on every boot. prepare-postgres must remove such a file, and only such a file.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.pgcluster import free_port
from tests.appliance.test_appliance_boot import missing_prerequisites
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
PREPARE = REPO / "scripts" / "appliance" / "prepare-postgres"

pytestmark = pytest.mark.skipif(
    bool(missing_prerequisites()), reason=f"the appliance needs {', '.join(missing_prerequisites())}"
)


def pg_bin() -> Path:
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    return max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))


class Cluster:
    """An appliance cluster in a temporary DATA_DIR, handled as the user Postgres runs as (as root,
    `postgres`, as the entrypoint does on a host)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self.run_dir = data_dir / "run"
        self.run_dir.mkdir(mode=0o700)
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        if os.geteuid() == 0:
            shutil.chown(data_dir, self.user, self.user)
            shutil.chown(self.run_dir, self.user, self.user)
        self.env = {
            **os.environ,
            "PGDATA": str(self.pgdata),
            "RUN_DIR": str(self.run_dir),
            "PGPORT": str(free_port()),
            "PG_LISTEN_ADDRESSES": "",
            "PG_SHARED_BUFFERS": "16MB",
            "PG_MAX_CONNECTIONS": "20",
            "PATH": f"{pg_bin()}:{os.environ['PATH']}",
        }

    def as_user(self, *command: str) -> list[str]:
        if os.geteuid() != 0:
            return list(command)
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--", *command]

    def prepare(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.as_user(str(PREPARE), "app", "agent"), env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)

    def start(self) -> subprocess.CompletedProcess[str]:
        log = self.data_dir / "run" / "postgres.log"
        return subprocess.run(self.as_user("pg_ctl", f"--pgdata={self.pgdata}", f"--log={log}", "--wait",
                                           "--timeout=60", "start"),
                              env=self.env, capture_output=True, text=True, timeout=90, check=False)

    def log(self) -> str:
        path = self.run_dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            return None

    def backends(self) -> list[int]:
        """Live processes whose working directory is the cluster: the postmaster and its children."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if os.readlink(proc / "cwd") == str(self.pgdata):
                    found.append(int(proc.name))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        subprocess.run(self.as_user("pg_ctl", f"--pgdata={self.pgdata}", "--mode=immediate", "--wait", "stop"),
                       env=self.env, capture_output=True, timeout=60, check=False)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Under /tmp, not pytest's tmp_path: as root, Postgres runs as `postgres`, who must reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="prepare-postgres-", dir="/tmp"))
    os.chmod(data_dir, 0o755)
    made = Cluster(data_dir)
    first = made.prepare()
    assert first.returncode == 0, first.stderr
    yield made
    made.stop()
    for pid in made.backends():
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(data_dir, ignore_errors=True)


def kill_postmaster(cluster: Cluster) -> None:
    """SIGKILL, as `docker kill` or a lost machine would: postmaster.pid stays behind."""
    started = cluster.start()
    assert started.returncode == 0, started.stderr + cluster.log()
    os.kill(cluster.postmaster_pid(), signal.SIGKILL)
    # Its children notice the postmaster's death and exit; until then its shared memory is in use.
    wait_for(lambda: not cluster.backends(), 30, "the killed postmaster's children to exit")
    assert (cluster.pgdata / "postmaster.pid").exists()


@pytest.mark.timeout(180)
def test_postgres_starts_after_an_unclean_stop_whose_pid_now_belongs_to_another_live_process(
    cluster: Cluster,
) -> None:
    kill_postmaster(cluster)
    # Another process of the same user now has the old postmaster's PID (in a container it was
    # fatal-watchdog); a sleep stands in for it, and its PID goes into the file.
    parked = subprocess.Popen(cluster.as_user("sleep", "300"))
    try:
        pid_file = cluster.pgdata / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        wait_for(lambda: Path(f"/proc/{parked.pid}/comm").read_text().strip() == "sleep", 10,
                 "the parked process to run as sleep")
        pid_file.write_text("\n".join([str(parked.pid), *lines[1:]]) + "\n")
        # The socket's lock file names the same PID (Postgres checks it the same way).
        for socket_lock in cluster.run_dir.glob(".s.PGSQL.*.lock"):
            socket_lock.write_text("\n".join([str(parked.pid), *socket_lock.read_text().splitlines()[1:]]) + "\n")

        prepared = cluster.prepare()
        assert prepared.returncode == 0, prepared.stderr
        assert f"removing a stale {pid_file}: its PID {parked.pid} now belongs to 'sleep'" in prepared.stderr
        started = cluster.start()
        assert started.returncode == 0, started.stderr + cluster.log()
        assert parked.poll() is None, "the process that had the PID must be left alone"
    finally:
        parked.kill()
        parked.wait()


@pytest.mark.timeout(180)
def test_the_lock_files_of_a_killed_postgres_are_removed(cluster: Cluster) -> None:
    kill_postmaster(cluster)
    prepared = cluster.prepare()
    assert prepared.returncode == 0, prepared.stderr
    # The killed postmaster is gone or a zombie not yet reaped: either way not a running postgres.
    assert "removing a stale" in prepared.stderr
    assert not (cluster.pgdata / "postmaster.pid").exists()
    assert not list(cluster.run_dir.glob(".s.PGSQL.*.lock"))
    started = cluster.start()
    assert started.returncode == 0, started.stderr + cluster.log()


@pytest.mark.timeout(180)
def test_the_pid_file_of_a_running_postgres_is_left_alone(cluster: Cluster) -> None:
    started = cluster.start()
    assert started.returncode == 0, started.stderr + cluster.log()
    lock_files = [cluster.pgdata / "postmaster.pid", *cluster.run_dir.glob(".s.PGSQL.*.lock")]
    before = [path.read_text() for path in lock_files]
    prepared = cluster.prepare()
    assert prepared.returncode == 0, prepared.stderr
    assert prepared.stderr.count("already runs") == 2
    assert [path.read_text() for path in lock_files] == before
    # A second postmaster on the same cluster is still refused.
    second = cluster.start()
    assert second.returncode != 0
