"""Every JSON and curl example of README.md, taken from the README itself (so they cannot drift)
and executed against a real `python -m app` with real workers: each JSON run body is submitted to
`POST /runs` and `POST /api/runs` and must complete; each `curl` command runs with real curl,
against this server instead of localhost:8080, and must answer the status its `# → NNN` comment
states (2xx when it states none). Issue 15: the README's own run example answered 500.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.verify import verify_run
from tests.helpers import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_ADDRESS = "http://localhost:8080"
SEED_STEP_KEYS = {"name", "input", "dependsOn"}


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


class CurlExample:
    """One curl command of a sh block (continuation lines joined) and the status it documents."""

    def __init__(self, lines: list[str]) -> None:
        comments = [line for line in lines if line.lstrip().startswith("#")]
        command, _, comment = " ".join(line for line in lines if line not in comments).partition("  #")
        self.text = command.strip()
        self.arguments = shlex.split(self.text)
        documented = re.search(r"→ (\d{3})", " ".join([comment, *comments]))
        self.status = int(documented.group(1)) if documented else None

    def argument_after(self, flag: str) -> str | None:
        return self.arguments[self.arguments.index(flag) + 1] if flag in self.arguments else None

    @property
    def body(self) -> Any:
        data = self.argument_after("-d") or self.argument_after("--data")
        return json.loads(data) if data and not data.startswith("@") else None


def curl_examples() -> list[CurlExample]:
    examples = []
    for block in code_blocks("sh"):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("curl "):
                command = [lines[i]]
                # A command goes on while its quotes are open or a line ends with a backslash; the
                # comment line right after it states the answer.
                while (unbalanced(command) or command[-1].rstrip().endswith("\\")) and i + 1 < len(lines):
                    i += 1
                    command[-1] = command[-1].rstrip().removesuffix("\\")
                    command.append(lines[i])
                if i + 1 < len(lines) and lines[i + 1].startswith("# →"):
                    i += 1
                    command.append(lines[i])
                examples.append(CurlExample(command))
            i += 1
    return examples


def unbalanced(lines: list[str]) -> bool:
    try:
        shlex.split(" ".join(line.split("  #")[0] for line in lines))
    except ValueError:
        return True
    return False


JSON_EXAMPLES = code_blocks("json")
CURL_EXAMPLES = curl_examples()


def test_the_readme_has_the_examples_this_module_runs() -> None:
    assert JSON_EXAMPLES, "no ```json block in README.md"
    assert len(CURL_EXAMPLES) >= 8, [example.text for example in CURL_EXAMPLES]
    # The seed-compatible body: goal and steps of name, input and dependsOn only, to POST /runs.
    seed = [example for example in CURL_EXAMPLES if f"{DOCUMENTED_ADDRESS}/runs" in example.arguments]
    assert any(example.body and set(example.body) == {"goal", "steps"}
               and all(set(step) <= SEED_STEP_KEYS for step in example.body["steps"])
               and any("dependsOn" in step for step in example.body["steps"]) for example in seed)


def completed(server, run_id: str, conn) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status, run = server.json("GET", f"/api/runs/{run_id}")
        assert status == 200, run
        return run if run["status"] != "running" else None

    run = wait_for(finished, 60, f"run {run_id} to finish")
    assert run["status"] == "completed", run
    assert verify_run(conn, run_id) == []
    return run


@pytest.mark.parametrize("path", ["/runs", "/api/runs"])
@pytest.mark.parametrize("index", range(len(JSON_EXAMPLES)))
def test_every_json_example_is_a_run_that_completes(server, module_workers, module_conn, index: int, path: str) -> None:
    body = json.loads(JSON_EXAMPLES[index])
    status, answer = server.json("POST", path, body)
    # A repeated idempotency key (the same example on the second path) answers 200 with the same run.
    assert status in (200, 201), answer
    completed(server, answer["runId"], module_conn)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (scripts/test installs it)")
def test_every_curl_example_answers_as_documented(server, module_workers, module_conn, tmp_path: Path) -> None:
    # `--data @run.json` reads the README's run example from the working directory.
    (tmp_path / "run.json").write_text(JSON_EXAMPLES[0])
    run_id = None
    for example in CURL_EXAMPLES:
        arguments = [argument.replace(DOCUMENTED_ADDRESS, server.url) for argument in example.arguments]
        if any("RUN_ID" in argument for argument in arguments):
            assert run_id, f"{example.text}: no run was submitted before it"
            arguments = [argument.replace("RUN_ID", run_id) for argument in arguments]
        result = subprocess.run([*arguments, "--write-out", "\n%{http_code}"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 0, f"{example.text}\n{result.stderr}"
        body, _, status = result.stdout.rpartition("\n")
        if example.status is not None:
            assert int(status) == example.status, f"{example.text}\n{status} {body}"
        else:
            assert 200 <= int(status) < 300, f"{example.text}\n{status} {body}"
        if "POST" in arguments and body.startswith("{") and "runId" in (answer := json.loads(body)):
            run_id = answer["runId"]
            completed(server, run_id, module_conn)
