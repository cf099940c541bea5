"""The built-in demo tools: fetch_data, transform, notify, sleep, plan. Offline and deterministic."""
from __future__ import annotations

import hashlib
from typing import Any

from engine.tools import StepContext

_TOPICS = ("latency", "throughput", "recovery", "durability", "cost", "accuracy", "safety", "scale")


def fetch_data(ctx: StepContext) -> dict:
    """Fetch a small dataset about `query` (default: the step's name). Deterministic, so a re-run
    returns the same data; `count` items, at most 50."""
    item = ctx.input.get("item")  # a map child's item: a query, or an object with one
    item_query = item.get("query") if isinstance(item, dict) else item
    query = str(ctx.input.get("query") or item_query or ctx.input.get("source") or ctx.step_name)
    count = max(1, min(int(ctx.input.get("count", 5)), 50))
    seed = hashlib.sha256(query.encode()).digest()
    items = []
    for i in range(count):
        byte = seed[i % len(seed)]
        items.append({"id": f"{query[:24]}-{i + 1}", "topic": _TOPICS[byte % len(_TOPICS)],
                      "score": round((byte / 255) * 100, 1)})
    return {"source": query, "items": items, "count": len(items)}


def transform(ctx: StepContext) -> dict:
    """Merge the items of all parents; `op` is `merge` (default), `top` (best `n` by score) or `stats`."""
    items: list[dict[str, Any]] = []
    for parent in sorted(ctx.parents):
        output = ctx.parents[parent] or {}
        for item in output.get("items", []) if isinstance(output, dict) else []:
            # A map step's items are its children's outputs: merge the items inside them.
            if isinstance(item, dict) and isinstance(item.get("items"), list):
                items.extend(item["items"])
            else:
                items.append(item)
    op = ctx.input.get("op", "merge")
    if op == "top":
        items = sorted(items, key=lambda item: item.get("score", 0), reverse=True)[: int(ctx.input.get("n", 5))]
    scores = [item.get("score", 0) for item in items]
    topics: dict[str, int] = {}
    for item in items:
        topics[item.get("topic", "?")] = topics.get(item.get("topic", "?"), 0) + 1
    result: dict[str, Any] = {"count": len(items), "sources": sorted(ctx.parents), "topics": topics,
                              "meanScore": round(sum(scores) / len(scores), 1) if scores else None}
    if op != "stats":
        result["items"] = items
    return result


def notify(ctx: StepContext) -> dict:
    """Send a notification exactly once per step, keyed by the step's idempotency key."""
    message = str(ctx.input.get("message") or _summary_line(ctx))
    sent_now = ctx.record_notification(message[:500])
    return {"notified": True, "duplicate": not sent_now, "idempotencyKey": ctx.idempotency_key,
            "message": message[:500]}


def plan(ctx: StepContext) -> dict:
    """A planner: `count` queries (default 3, at most 100) about `topic` (default: the run's goal
    as given in `topic`, else the step's name), as the list `items` a map step fans out over."""
    topic = str(ctx.input.get("topic") or ctx.step_name)
    count = max(0, min(int(ctx.input.get("count", 3)), 100))
    angles = ("background", "recent results", "open problems", "costs", "risks", "alternatives")
    items = [{"query": f"{topic}: {angles[i % len(angles)]} #{i + 1}"} for i in range(count)]
    return {"topic": topic, "items": items, "count": count}


def sleep(ctx: StepContext) -> dict:
    """Wait `seconds` (default 1), waking early if the attempt is taken away."""
    seconds = float(ctx.input.get("seconds", 1))
    ctx.sleep(seconds)
    return {"slept": seconds}


def _summary_line(ctx: StepContext) -> str:
    for output in ctx.parents.values():
        if isinstance(output, dict) and output.get("summary"):
            return str(output["summary"])
    return f"step {ctx.step_name} finished"


TOOLS = {"fetch_data": fetch_data, "transform": transform, "notify": notify, "sleep": sleep, "plan": plan}
