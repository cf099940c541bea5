"""What a benchmark hands back: figures (one sample per repeat, reported as the median with its
spread) and the percentiles they are made of."""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field


class Unavailable(Exception):
    """A benchmark could not run here (a missing dependency, the web app not runnable); the
    message says why and is printed instead of the figures."""


@dataclass
class Figure:
    """One reported number. `samples` holds one value per repeat; the figure is their median."""

    key: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def low(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def high(self) -> float | None:
        return max(self.samples) if self.samples else None

    def to_json(self) -> dict[str, object]:
        return {"median": _round(self.median), "min": _round(self.low), "max": _round(self.high),
                "samples": [_round(s) for s in self.samples], "unit": self.unit, "label": self.label,
                "note": self.note}


@dataclass
class BenchResult:
    """The figures of one benchmark, or why it could not run."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    unavailable: str | None = None
    seconds: float = 0.0

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)


def collect(repeats: Iterable[dict[str, float]], specs: dict[str, tuple[str, str]],
            notes: dict[str, str] | None = None) -> list[Figure]:
    """Turn per-repeat measurements ({key: value}) into figures; `specs` is {key: (label, unit)}
    in display order. Keys missing from a repeat are skipped for that repeat."""
    rows = list(repeats)
    figures = []
    for key, (label, unit) in specs.items():
        samples = [row[key] for row in rows if row.get(key) is not None]
        figures.append(Figure(key, label, unit, samples, (notes or {}).get(key, "")))
    return figures


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 4 if abs(value) < 10 else 2)
