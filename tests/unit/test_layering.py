"""Import direction inside the engine, read from the source (no import side effects): the model and
the wire format sit below the store, and the store's modules do not import each other in a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):  # walk: imports inside functions count too
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_events_and_runs_do_not_import_each_other():
    events = imported_modules(ROOT / "engine/store/events.py")
    runs = imported_modules(ROOT / "engine/store/runs.py")
    assert "engine.store.runs" not in events
    assert not ("engine.store.events" in runs and "engine.store.runs" in events)


def test_the_model_and_the_wire_format_import_nothing_of_the_engine_but_the_model():
    model = {m for m in imported_modules(ROOT / "engine/model.py") if m.startswith("engine")}
    wire = {m for m in imported_modules(ROOT / "engine/wire.py") if m.startswith("engine")}
    assert model == set() and wire == {"engine.model"}


def test_only_the_wire_module_shapes_api_json():
    """camelCase API keys of runs and events are written in engine/wire.py only (not in the store)."""
    for path in (ROOT / "engine/store").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for key in ('"maxAttempts"', '"dependsOn"', '"runId"', '"stepId"', '"lastSeen"'):
            assert key not in text, f"{path.name} shapes API JSON ({key}); that belongs in engine/wire.py"
