"""`python -m engine tools [--wait TOOL ...]`: the tools runs may use, and waiting for a worker that
offers them (what a script does between starting a worker and submitting)."""
from __future__ import annotations

import os
from pathlib import Path

from tests.chaos.support import wait_registered
from tests.integration.test_cli import cli

TOOLS = "from durable_agent import tool\n\n@tool('gamma')\ndef gamma(ctx):\n    return {}\n"


def test_tools_lists_what_runs_may_use_and_waits_for_live_workers(db_url, conn, spawn, tmp_path: Path):
    listed = cli(db_url, "tools")
    assert listed.returncode == 0
    assert listed.stdout.split("\n")[:5] == [f"{name} (no live worker)" for name in
                                             ("fetch_data", "notify", "plan", "sleep", "transform")]
    missing = cli(db_url, "tools", "--wait", "gamma", "--timeout", "0.3")
    assert missing.returncode == 1 and "no live worker offers gamma after 0.3s" in missing.stderr

    (tmp_path / "gamma_tools.py").write_text(TOOLS)
    proc = spawn("g1", 1, TOOL_MODULES="gamma_tools", PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    waited = cli(db_url, "tools", "--wait", "gamma", "fetch_data", "--timeout", "30")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.split() == ["fetch_data", "gamma", "notify", "plan", "sleep", "transform"]
    wait_registered(conn, proc)
    proc.kill()
    after = cli(db_url, "tools")
    assert "gamma (no live worker)" in after.stdout.splitlines()  # still accepted at submit: a worker may return
