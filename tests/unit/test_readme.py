"""The README documents every setting of the one list in the code, with its default."""
from __future__ import annotations

from pathlib import Path

from app.config import documented_web_settings
from engine.config import documented_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_documents_every_setting_with_its_default():
    for name, default, _help in [*documented_settings(), *documented_web_settings()]:
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"README has no row for {name}"
        assert (f"`{default}`" in row) if default != "" else ("(empty)" in row), f"README's default for {name} is stale"


def test_readme_shows_the_two_setup_commands():
    assert "scripts/run" in README and "scripts/test" in README


def test_every_environment_variable_the_code_reads_is_documented():
    import re
    root = Path(__file__).resolve().parents[2]
    read = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]+)["']""")
    names = {name for package in ("engine", "worker", "app")
             for path in (root / package).rglob("*.py") for name in read.findall(path.read_text())}
    assert "PG_BIN" in names  # the scan finds what it should
    documented = {name for name, _, _ in [*documented_settings(), *documented_web_settings()]}
    undocumented = sorted(n for n in names if n not in documented and f"`{n}`" not in README)
    assert not undocumented, f"read from the environment but not in the README: {undocumented}"
