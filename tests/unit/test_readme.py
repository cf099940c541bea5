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
