"""The README's examples of the agent primitives are valid runs (so they can be submitted as
written), and every primitive event type the engine writes is documented."""
from __future__ import annotations

import json
import re
from pathlib import Path

from engine.config import Settings
from engine.dag import parse_run
from engine.tools import tool_names

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README.split("## Agent primitives", 1)[1].split("\n## ", 1)[0]


def test_every_json_run_in_the_primitives_section_is_valid():
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", SECTION, re.S)]
    assert len(bodies) == 4
    for body in bodies:
        assert parse_run(body, Settings(), tool_names()).steps


def test_every_event_type_written_by_the_primitives_is_documented():
    sources = "".join(p.read_text() for p in (ROOT / "engine" / "store").glob("*.py"))
    # Event names appear in the store's SQL as string literals; dict keys in Python use [' … '].
    written = set(re.findall(r"(?<!\[)'((?:step|steps|run)_[a-z_]+)'", sources))
    assert {"steps_mapped", "step_waiting", "step_signalled", "run_deadline_exceeded", "step_reused"} <= written
    undocumented = sorted(t for t in written if f"`{t}`" not in README and t not in README)
    assert undocumented == []
