"""The README's Python example of the agent primitives, run as written against a real worker: a
map, an LLM draft, an approval wait resolved with `Client.signal`, a durable timer, a deadline and a
budget on the run, then `Client.rerun` from the draft."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from engine import store
from engine.model import RunStatus
from engine.verify import verify_all
from tests.chaos.support import wait_registered
from tests.helpers import ROOT

SECTION = re.compile(r"^## Agent primitives\n(.*?)^## ", re.S | re.M)
BLOCK = re.compile(r"^```python\n(# agent_with_approval\.py\n.*?)^```", re.S | re.M)


def readme_example() -> str:
    section = SECTION.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert section, "README has no 'Agent primitives' section"
    block = BLOCK.search(section.group(1))
    assert block, "the Agent primitives section has no agent_with_approval.py example"
    return block.group(1)


def test_the_readmes_sdk_example_of_the_primitives_runs_as_written(conn, db_url, spawn, tmp_path: Path):
    worker = spawn("sdk-w1", 4)
    wait_registered(conn, worker)
    script = tmp_path / "agent_with_approval.py"
    script.write_text(readme_example(), encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first == "completed 3", done.stdout
    source_id, rerun_id = second.split()[3], second.split()[1]
    source = store.run_get(conn, source_id)
    steps = {s.name: s for s in source.steps}
    assert steps["wait.approve"].output["approved"] is True and steps["tool_call.send"].status == "succeeded"
    rerun = store.run_get(conn, rerun_id)
    assert rerun.source_run_id is not None and str(rerun.source_run_id) == source_id
    reused = {e.step for e in store.events_after(conn, rerun_id) if e.type == "step_reused"}
    assert "tool_call.plan" in reused and "llm_call.draft" not in reused
    assert source.status == RunStatus.COMPLETED
    assert verify_all(conn) == {}
