"""What the run page shows of the agent primitives: waiting steps with their prompt and time left,
the signals received, the run's links (re-run of / re-runs / deadline), and the DAG with each map
step's children collapsed into one node ("fetch ×30")."""
from __future__ import annotations

import re
from typing import Any

import psycopg

from engine import store
from engine.model import StepStatus

MAP_CHILD = re.compile(r"^(?P<map>.+)\[(?P<index>\d+)\]$")
# The collapsed node's status: the most telling of its children's, in this order.
STATUS_PRECEDENCE = (StepStatus.RUNNING, "retrying", StepStatus.DEAD_LETTER, StepStatus.READY,
                     StepStatus.CANCELLED, StepStatus.PENDING, StepStatus.SUCCEEDED)


def collapse_map_children(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace each map step's children by one node named `<map> ×N`, for the DAG picture."""
    map_names = {s["name"] for s in steps if s["kind"] == "map"}
    groups: dict[str, list[dict[str, Any]]] = {}
    kept: list[dict[str, Any]] = []
    for step in steps:
        match = MAP_CHILD.match(step["name"])
        if match and match["map"] in map_names:
            groups.setdefault(match["map"], []).append(step)
        else:
            kept.append(step)
    if not groups:
        return steps
    collapsed_name = {name: f"{name} ×{len(children)}" for name, children in groups.items()}
    child_names = {s["name"]: collapsed_name[m] for m, children in groups.items() for s in children}
    result = []
    for step in kept:
        parents = list(dict.fromkeys(child_names.get(p, p) for p in step["dependsOn"]))
        result.append({**step, "dependsOn": parents})
        if step["name"] in groups:
            result.append(_collapsed(collapsed_name[step["name"]], groups[step["name"]]))
    return result


def _collapsed(name: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    from app.dag_svg import display_status
    statuses = {display_status(c) for c in children}
    status = next((s for s in STATUS_PRECEDENCE if s in statuses), children[0]["status"])
    first = children[0]
    return {**first, "name": name, "status": status, "attempt": max(c["attempt"] for c in children),
            "dependsOn": list(first["dependsOn"]), "collapsed": len(children)}


def primitives_context(conn: psycopg.Connection, run: dict[str, Any]) -> dict[str, Any]:
    links = store.run_links(conn, run["id"])
    waits = store.waits_for_run(conn, run["id"])
    signals = store.signals_for_run(conn, run["id"]) if waits else []
    return {"waits": waits, "signals": signals, "links": links}
