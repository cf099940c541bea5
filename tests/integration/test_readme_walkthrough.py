"""The README's "Write your own tools" walkthrough, executed as written: its Python files are
written to an empty directory, its import line is run, and its shell block runs with bash against
the test database — `pip install` of a copy of this checkout into a fresh virtualenv, the console
scripts, a worker loading the user's module, the client script and `durable-agent verify`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import store
from engine.model import RunStatus, WorkerStatus
from tests.chaos.support import assert_invariants
from tests.helpers import FAST_ENV, ROOT

SECTION = re.compile(r"^## Write your own tools\n(.*?)^## ", re.S | re.M)
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
# `pip install` of the checkout builds a wheel and fetches its dependencies: minutes on a busy
# machine with a slow package index, seconds otherwise.
WALKTHROUGH_TIMEOUT_SECONDS = 600


def walkthrough_blocks() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    section = SECTION.search(readme)
    assert section, "README has no 'Write your own tools' section"
    return BLOCK.findall(section.group(1))


def copy_checkout(target: Path) -> Path:
    """The files of this checkout without virtualenvs, data, caches or build output."""
    ignored = shutil.ignore_patterns(".venv", ".data", ".git", "artifacts", "build", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache", ".hypothesis", "bench")
    return Path(shutil.copytree(ROOT, target, ignore=ignored))


def run_shell(script: str, workdir: Path, env: dict[str, str], log: Path) -> subprocess.CompletedProcess:
    """bash -eu on the script; on a timeout, fail with what it printed so far (pip's progress included)."""
    with open(log, "w+") as out, open(str(log) + ".err", "w+") as err:
        proc = subprocess.Popen(["bash", "-euc", script], cwd=workdir, env=env, stdout=out, stderr=err, text=True)
        try:
            proc.wait(WALKTHROUGH_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"the walkthrough did not finish in {WALKTHROUGH_TIMEOUT_SECONDS}s:\n"
                        f"{log.read_text()}\n{Path(str(log) + '.err').read_text()}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), Path(str(log) + ".err").read_text())


@pytest.mark.timeout(WALKTHROUGH_TIMEOUT_SECONDS + 60)
def test_every_block_of_the_walkthrough_runs_as_written(conn, db_url, tmp_path: Path):
    blocks = walkthrough_blocks()
    assert [lang for lang, _ in blocks] == ["python", "python", "python", "sh"]
    workdir = tmp_path / "my-agent"
    workdir.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}, **FAST_ENV,
           "DATABASE_URL": db_url, "CHECKOUT": str(copy_checkout(tmp_path / "checkout")),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    for _lang, code in blocks[1:3]:
        name = code.splitlines()[0].removeprefix("# ").strip()
        assert name.endswith(".py"), f"a file block must start with '# name.py', not {code.splitlines()[0]!r}"
        (workdir / name).write_text(code)
    done = run_shell(blocks[3][1], workdir, env, tmp_path / "walkthrough.log")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    printed = done.stdout.splitlines()
    assert {"fetch_data", "notify", "shout", "sleep", "transform", "word_count"} <= set(printed), output  # `durable-agent tools`
    assert "completed 10" in printed, output  # the five ids fetch_data returned ("postgres queues-N")
    assert "log: tool_call.count counted 10 words in 6 texts" in printed
    assert "ok: every invariant holds for every run" in done.stdout

    # The import line of the README, in the user's virtualenv, outside the checkout.
    imported = subprocess.run([str(workdir / "venv" / "bin" / "python"), "-c", blocks[0][1]], cwd=workdir,
                              env=env, capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    installed = subprocess.run([str(workdir / "venv" / "bin" / "python"), "-c", "import engine; print(engine.__file__)"],
                               cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert "/venv/lib/" in installed.stdout  # the installed package, not this checkout

    (run_id,) = store.run_ids(conn)
    run = store.run_get(conn, run_id)
    assert run.status == RunStatus.COMPLETED
    assert {s.name: s.output for s in run.steps}["tool_call.shout"]["text"] == "DONE"
    workers = store.workers_list(conn, include_gone=True)
    assert [(w.name, w.status) for w in workers] == [("tools-1", WorkerStatus.STOPPED)]
    assert_invariants(conn, [run_id])


@pytest.mark.parametrize("name", ["my_tools.py", "run_my_agent.py"])
def test_the_walkthrough_files_are_lint_clean(name, tmp_path: Path):
    code = next(code for _lang, code in walkthrough_blocks() if code.startswith(f"# {name}"))
    (tmp_path / name).write_text(code)
    ruff = Path(sys.executable).parent / "ruff"
    checked = subprocess.run([str(ruff), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(tmp_path / name)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout
