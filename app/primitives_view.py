"""What the run page shows of the agent primitives: waiting steps with their prompt and time left,
the signals received, the run's links (re-run of / re-runs / deadline), and the DAG with each map
step's children collapsed into one node ("fetch ×30")."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg

from app.dag_svg import display_status
from engine import store
from engine.model import Run, Step, StepStatus
from engine.primitives import MAP_KIND

MAP_CHILD = re.compile(r"^(?P<map>.+)\[(?P<index>\d+)\]$")
# The collapsed node shows its most telling child: the first display status found in this order
# ("retrying" is the display status of a ready step that failed before, `display_status`).
STATUS_PRECEDENCE = (StepStatus.RUNNING, "retrying", StepStatus.DEAD_LETTER, StepStatus.READY,
                     StepStatus.CANCELLED, StepStatus.PENDING, StepStatus.SUCCEEDED)


def collapse_map_children(steps: Sequence[Step]) -> list[Step]:
    """Replace each map step's children by one node named `<map> ×N`, for the DAG picture."""
    map_names = {s.name for s in steps if s.kind == MAP_KIND}
    groups: dict[str, list[Step]] = {}
    kept: list[Step] = []
    for step in steps:
        match = MAP_CHILD.match(step.name)
        if match and match["map"] in map_names:
            groups.setdefault(match["map"], []).append(step)
        else:
            kept.append(step)
    if not groups:
        return list(steps)
    collapsed_name = {name: f"{name} ×{len(children)}" for name, children in groups.items()}
    child_names = {s.name: collapsed_name[m] for m, children in groups.items() for s in children}
    result = []
    for step in kept:
        parents = tuple(dict.fromkeys(child_names.get(p, p) for p in step.depends_on))
        result.append(replace(step, depends_on=parents))
        if step.name in groups:
            result.append(_collapsed(collapsed_name[step.name], groups[step.name]))
    return result


def _collapsed(name: str, children: list[Step]) -> Step:
    """The node standing for a map step's children: its most telling child, renamed. That child's
    status and attempt are shown, so a child waiting to be retried shows as retrying."""
    shown = {display_status(c): c for c in reversed(children)}  # the first child of each status
    telling = next((shown[s] for s in STATUS_PRECEDENCE if s in shown), children[0])
    return replace(telling, name=name, depends_on=children[0].depends_on)


def primitives_context(conn: psycopg.Connection, run: Run) -> dict[str, Any]:
    links = store.run_links(conn, run.id)
    waits = store.waits_for_run(conn, run.id)
    signals = store.signals_for_run(conn, run.id) if waits else []
    return {"waits": waits, "signals": signals, "links": links}
