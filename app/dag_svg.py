"""Geometry of the DAG picture on the run page: a layered layout (columns by depth, from
`engine.dag.layers`), node order inside a column by the average position of the parents (fewer
crossings), and edges as curves. The template `_dag.html` turns it into SVG."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.dag import layers
from engine.model import Step, StepStatus

NODE_WIDTH = 168
NODE_HEIGHT = 46
COLUMN_GAP = 56
ROW_GAP = 16
MARGIN = 12
LABEL_CHARS = 20


@dataclass(frozen=True)
class Node:
    step_id: int
    name: str
    label: str
    kind: str
    status: str  # display status: a step's status, or "retrying" for a ready step that failed before
    attempt: int
    attempt_limit: int
    x: float
    y: float


@dataclass(frozen=True)
class Edge:
    path: str
    status: str  # the parent's display status


@dataclass(frozen=True)
class DagPicture:
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float
    node_width: float = NODE_WIDTH
    node_height: float = NODE_HEIGHT


def display_status(step: Step) -> str:
    """A ready step that already failed an attempt is waiting to be retried."""
    if step.status == StepStatus.READY and step.attempt > 0:
        return "retrying"
    return step.status.value


def short_label(name: str) -> str:
    label = name.split(".", 1)[-1]
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def dag_picture(steps: Sequence[Step]) -> DagPicture:
    """Lay out a run's steps in columns by depth, each column ordered near its parents."""
    parents = {s.name: list(s.depends_on) for s in steps}
    depth = layers(parents)
    columns: dict[int, list[Step]] = {}
    for step in steps:
        columns.setdefault(depth[step.name], []).append(step)
    row_of: dict[str, float] = {}
    for column in sorted(columns):
        ordered = sorted(columns[column], key=lambda s: (_mean_parent_row(s, row_of), s.id))
        for row, step in enumerate(ordered):
            row_of[step.name] = row
        columns[column] = ordered
    tallest = max(len(c) for c in columns.values())
    height = 2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP
    nodes = {}
    for column, members in columns.items():
        offset = (tallest - len(members)) * (NODE_HEIGHT + ROW_GAP) / 2  # centre short columns
        for row, step in enumerate(members):
            x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
            y = MARGIN + offset + row * (NODE_HEIGHT + ROW_GAP)
            nodes[step.name] = Node(step.id, step.name, short_label(step.name), step.kind,
                                    display_status(step), step.attempt, step.attempt_limit, x, y)
    edges = [Edge(_curve(nodes[p], nodes[s.name]), nodes[p].status) for s in steps for p in s.depends_on]
    width = 2 * MARGIN + len(columns) * NODE_WIDTH + (len(columns) - 1) * COLUMN_GAP
    return DagPicture(list(nodes.values()), edges, width, height)


def _mean_parent_row(step: Step, row_of: dict[str, float]) -> float:
    rows = [row_of[p] for p in step.depends_on if p in row_of]
    return sum(rows) / len(rows) if rows else -1.0


def _curve(parent: Node, child: Node) -> str:
    x1, y1 = parent.x + NODE_WIDTH, parent.y + NODE_HEIGHT / 2
    x2, y2 = child.x, child.y + NODE_HEIGHT / 2
    bend = (x2 - x1) / 2
    return f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
