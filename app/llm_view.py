"""What the pages show of LLM steps: each step's streamed text by attempt (interrupted attempts
marked), tokens and cost per step and for the run, the budget, and the provider limits. Context
builders for `_stream.html`, `_llm_usage.html` and `_limits.html`, shared by the pages and sockets."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from flask import render_template

from engine.model import Run
from engine.store.provider_limits import limits_list
from engine.store.streams import run_usage, stream_read


def llm_context(conn: psycopg.Connection, run: Run) -> dict[str, Any]:
    """Streams by step id and the run's usage (empty for a run without LLM steps: no query)."""
    if not any(s.kind == "llm_call" for s in run.steps):
        return {"streams": {}, "usage": None}
    streams = {s.step_id: s for s in stream_read(conn, run_id=run.id)}
    return {"streams": streams, "usage": run_usage(conn, run.id)}


def stream_fragments(conn: psycopg.Connection, run_id: UUID) -> str:
    """Only the growing text (and the usage panel): what a stream wake-up redraws."""
    streams = stream_read(conn, run_id=run_id)
    usage = run_usage(conn, run_id)
    html = [render_template("_stream.html", s={"id": s.step_id}, streams={s.step_id: s}, usage=usage)
            for s in streams if s.parts]
    return "".join(html)


def limits_context(conn: psycopg.Connection, window_seconds: float) -> dict[str, Any]:
    return {"limits": limits_list(conn, window_seconds)}


def usd(value: float | None) -> str:
    """Dollars with enough digits for a cent's fraction (an LLM call often costs less than one)."""
    if value is None:
        return ""
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"
