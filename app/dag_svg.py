"""Geometry of the DAG picture on the run page: a layered layout (layers by depth, from
`engine.dag.layers`), node order inside a layer by the average position of the parents (fewer
crossings), and edges as curves. Two layouts of the same graph: left to right for wide screens,
top to bottom (at most two nodes side by side) for phones, where a wide picture would have to
shrink its text or scroll. The page carries both and CSS shows the one that fits. The template
`_dag.html` turns them into SVG."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.dag import layers
from engine.model import RunStatus, Step, StepStatus

NODE_WIDTH = 168
NODE_HEIGHT = 46
COLUMN_GAP = 56
ROW_GAP = 16
MARGIN = 12
LABEL_CHARS = 20

# The phone layout: its viewBox is no wider than a 390 px phone's card, so it is never scaled
# down and its 11–13 px text stays that size.
NARROW_WIDTH = 330
NARROW_NODE_WIDTH = 146
NARROW_SIDE_LANE = 5  # x of the lanes, left and right of the nodes, that edges skipping a row run down
NARROW_PER_ROW = 2
NARROW_ROW_GAP = 10
NARROW_LAYER_GAP = 30
NARROW_MARGIN = 8
NARROW_LABEL_CHARS = 16

BLOCKED = "blocked"  # display status of a pending step that a dead-lettered ancestor holds back


@dataclass(frozen=True)
class Node:
    step_id: int
    name: str
    label: str
    kind: str
    status: str  # display status: a step's status, "retrying" or "blocked" (see display_status)
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
    vertical: bool = False


def blocked_steps(steps: Sequence[Step]) -> set[str]:
    """Names of pending steps with a dead-lettered ancestor: they cannot run until it is redriven,
    so "pending" would suggest a wait that never ends."""
    by_name = {s.name: s for s in steps}
    blocked: dict[str, bool] = {}

    def is_blocked(name: str) -> bool:
        if name not in blocked:
            blocked[name] = False  # guards against revisiting; the graph is acyclic anyway
            blocked[name] = any(by_name[p].status == StepStatus.DEAD_LETTER or is_blocked(p)
                                for p in by_name[name].depends_on if p in by_name)
        return blocked[name]

    return {s.name for s in steps if s.status == StepStatus.PENDING and is_blocked(s.name)}


def display_status(step: Step, blocked: set[str] | frozenset[str] = frozenset(),
                   run_status: RunStatus = RunStatus.RUNNING) -> str:
    """A ready step that already failed an attempt is waiting to be retried; a pending step behind
    a dead letter (or in a run that is no longer running) is blocked."""
    if step.status == StepStatus.READY and step.attempt > 0:
        return "retrying"
    if step.status == StepStatus.PENDING and (step.name in blocked or run_status == RunStatus.FAILED):
        return BLOCKED
    return step.status.value


def short_label(name: str, chars: int = LABEL_CHARS) -> str:
    label = name.split(".", 1)[-1]
    return label if len(label) <= chars else label[: chars - 1] + "…"


def dag_picture(steps: Sequence[Step], vertical: bool = False, run_status: RunStatus = RunStatus.RUNNING
                ) -> DagPicture:
    """Lay out a run's steps: layers by depth, each layer ordered near its parents."""
    layered = _ordered_layers(steps)
    place = _place_vertical if vertical else _place_horizontal
    positions, width, height = place(layered)
    blocked = blocked_steps(steps)
    chars = NARROW_LABEL_CHARS if vertical else LABEL_CHARS
    nodes = {s.name: Node(s.id, s.name, short_label(s.name, chars), s.kind, display_status(s, blocked, run_status),
                          s.attempt, s.attempt_limit, *positions[s.name])
             for s in steps}
    if vertical:
        row_tops = sorted({n.y for n in nodes.values()})
        edges = [Edge(_edge_down(nodes[p], nodes[s.name], row_tops), nodes[p].status)
                 for s in steps for p in s.depends_on]
        return DagPicture(list(nodes.values()), edges, width, height, NARROW_NODE_WIDTH, NODE_HEIGHT, True)
    edges = [Edge(_curve_right(nodes[p], nodes[s.name]), nodes[p].status) for s in steps for p in s.depends_on]
    return DagPicture(list(nodes.values()), edges, width, height)


def _ordered_layers(steps: Sequence[Step]) -> list[list[Step]]:
    parents = {s.name: list(s.depends_on) for s in steps}
    depth = layers(parents)
    by_layer: dict[int, list[Step]] = {}
    for step in steps:
        by_layer.setdefault(depth[step.name], []).append(step)
    row_of: dict[str, float] = {}
    ordered = []
    for layer in sorted(by_layer):
        members = sorted(by_layer[layer], key=lambda s: (_mean_parent_row(s, row_of), s.id))
        for row, step in enumerate(members):
            row_of[step.name] = row
        ordered.append(members)
    return ordered


def _place_horizontal(layered: list[list[Step]]) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Layers as columns, left to right; short columns centred."""
    tallest = max(len(c) for c in layered)
    height = 2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP
    positions = {}
    for column, members in enumerate(layered):
        offset = (tallest - len(members)) * (NODE_HEIGHT + ROW_GAP) / 2
        for row, step in enumerate(members):
            positions[step.name] = (MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
                                    MARGIN + offset + row * (NODE_HEIGHT + ROW_GAP))
    width = 2 * MARGIN + len(layered) * NODE_WIDTH + (len(layered) - 1) * COLUMN_GAP
    return positions, width, height


def _place_vertical(layered: list[list[Step]]) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Layers as bands, top to bottom; a layer wider than NARROW_PER_ROW wraps into several rows,
    each centred."""
    positions = {}
    y = NARROW_MARGIN
    for members in layered:
        for start in range(0, len(members), NARROW_PER_ROW):
            row = members[start:start + NARROW_PER_ROW]
            row_width = len(row) * NARROW_NODE_WIDTH + (len(row) - 1) * NARROW_ROW_GAP
            x = (NARROW_WIDTH - row_width) / 2
            for i, step in enumerate(row):
                positions[step.name] = (x + i * (NARROW_NODE_WIDTH + NARROW_ROW_GAP), y)
            y += NODE_HEIGHT + NARROW_ROW_GAP
        y += NARROW_LAYER_GAP - NARROW_ROW_GAP
    return positions, NARROW_WIDTH, y - NARROW_LAYER_GAP + NARROW_MARGIN


def _mean_parent_row(step: Step, row_of: dict[str, float]) -> float:
    rows = [row_of[p] for p in step.depends_on if p in row_of]
    return sum(rows) / len(rows) if rows else -1.0


def _curve_right(parent: Node, child: Node) -> str:
    x1, y1 = parent.x + NODE_WIDTH, parent.y + NODE_HEIGHT / 2
    x2, y2 = child.x, child.y + NODE_HEIGHT / 2
    bend = (x2 - x1) / 2
    return f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def _edge_down(parent: Node, child: Node, row_tops: list[float]) -> str:
    """From the parent's bottom to the child's top when the child is in the next row; an edge that
    would cross a row in between (a wrapped layer) leaves by the parent's side and runs down a
    lane beside the nodes instead, so it never passes behind another node."""
    x2, y2 = child.x + NARROW_NODE_WIDTH / 2, child.y
    if row_tops.index(child.y) == row_tops.index(parent.y) + 1:
        x1, y1 = parent.x + NARROW_NODE_WIDTH / 2, parent.y + NODE_HEIGHT
        bend = max(12.0, (y2 - y1) / 2)
        return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
    left = parent.x + NARROW_NODE_WIDTH / 2 <= NARROW_WIDTH / 2
    lane = NARROW_SIDE_LANE if left else NARROW_WIDTH - NARROW_SIDE_LANE
    x1, y1 = (parent.x if left else parent.x + NARROW_NODE_WIDTH), parent.y + NODE_HEIGHT / 2
    return (f"M{x1:.1f},{y1:.1f} C{lane:.1f},{y1:.1f} {lane:.1f},{y1:.1f} {lane:.1f},{y1 + 14:.1f} "
            f"L{lane:.1f},{y2 - 20:.1f} C{lane:.1f},{y2 - 6:.1f} {x2:.1f},{y2 - 16:.1f} {x2:.1f},{y2:.1f}")
