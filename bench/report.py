"""The table on stdout and the JSON figures (the stable keys at the top level, each the
median of its repeats; `figures` holds every figure with its spread and samples)."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.figures import BenchResult, Figure

# Stable interface (docs/ARCHITECTURE.md, "Stable interfaces"): these keys are always present (null when not measured).
STABLE_KEYS = (
    "throughput_steps_per_s", "baseline_steps_per_s", "ratio_to_baseline", "handoff_p50_ms",
    "handoff_p99_ms", "submit_p50_ms", "recovery_median_s", "recovery_max_s", "live_p50_ms",
    "worker_rss_mb", "ratio_to_pgqueuer", "ratio_to_procrastinate",
    "chain_hop_p50_ms", "chain_hop_p99_ms", "chain20_p50_ms", "agent_dag_p50_ms", "dbos_step_ms",
    "ratio_hop_to_dbos_step",
)

# The targets in the README's figures table: key → (comparison, bound).
TARGETS: dict[str, tuple[str, float]] = {
    "ratio_to_pgqueuer": (">=", 1.0),
    "ratio_to_procrastinate": (">=", 10.0),
    "handoff_p50_ms": ("<=", 3.0),
    "handoff_p99_ms": ("<=", 30.0),
    "submit_p50_ms": ("<=", 10.0),
    "live_p50_ms": ("<=", 50.0),
    "recovery_median_s": ("<=", 0.10),
    "recovery_max_s": ("<=", 0.25),
    "idle_cpu_pct": ("<", 2.0),
    "chain_hop_p50_ms": ("<=", 1.0),
    "chain_hop_p99_ms": ("<=", 3.0),
    "chain20_p50_ms": ("<=", 40.0),
    "agent_dag_p50_ms": ("<=", 28.0),
    "ratio_hop_to_dbos_step": ("<=", 0.2),
    "worker_rss_mb": ("<=", 80.0),
    "stream_chunk_p50_ms": ("<=", 150.0),  # issue 12, batching included
}


def meets(key: str, value: float | None) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[key]
    ok = {"<=": value <= bound, "<": value < bound, ">=": value >= bound}[op]
    return "ok" if ok else "MISSED"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(results: list[BenchResult]) -> str:
    """One line per figure under a heading per benchmark; numbers right-aligned."""
    header = ("figure", "median", "spread (min-max)", "n", "unit", "target", "")
    rows = [_row(fig) for result in results for fig in result.figures]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in (1, 3) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    lines = [line(header), "-" * sum(w + 2 for w in widths)]
    for result in results:
        lines.append(f"[{result.name}]  {result.seconds:.0f}s")
        if result.unavailable:
            lines.append(f"  unavailable: {result.unavailable[:300]}")
        lines += [line(_row(fig)) for fig in result.figures]
    notes = [f"  {f.key}: {f.note}" for r in results for f in r.figures if f.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def _row(fig: Figure) -> tuple[str, ...]:
    target = TARGETS.get(fig.key)
    spread = f"{_fmt(fig.low)}-{_fmt(fig.high)}" if len(fig.samples) > 1 else ""
    return (f"  {fig.label}", _fmt(fig.median), spread, str(len(fig.samples)), fig.unit,
            f"{target[0]} {target[1]:g}" if target else "", meets(fig.key, fig.median))


def figures_json(results: list[BenchResult], environment: dict[str, Any], mode: str, seconds: float) -> dict[str, Any]:
    every: dict[str, Figure] = {f.key: f for r in results for f in r.figures}
    out: dict[str, Any] = {key: None for key in STABLE_KEYS}
    out.update({key: (round(f.median, 4) if f.median is not None else None) for key, f in every.items()})
    out["figures"] = {key: f.to_json() for key, f in every.items()}
    out["unavailable"] = {r.name: r.unavailable for r in results if r.unavailable}
    out["targets"] = {key: {"target": f"{op} {bound:g}", "verdict": meets(key, out.get(key)) or None}
                      for key, (op, bound) in TARGETS.items()}
    out["mode"] = mode
    out["duration_s"] = round(seconds, 1)
    out["environment"] = environment
    return out


def write_json(path: str, data: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": sys.version.split()[0]}
