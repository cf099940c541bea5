"""The benchmark runner's command line works without a database or the benchmark-only packages
(the benchmarks themselves are never part of the pass/fail suite)."""
from __future__ import annotations

import subprocess
import sys

from bench.figures import Figure, percentile
from bench.report import STABLE_KEYS, figures_json
from tests.helpers import ROOT


def test_bench_help_lists_the_stable_options() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    for option in ("--quick", "--json", "--only"):
        assert option in done.stdout


def test_bench_rejects_an_unknown_benchmark_name() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "nonsense"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown benchmark" in done.stderr


def test_json_always_carries_every_design_key_even_when_not_measured() -> None:
    data = figures_json([], {}, "quick", 1.0)
    assert all(key in data and data[key] is None for key in STABLE_KEYS)


def test_percentile_interpolates_and_figure_reports_median_and_spread() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    fig = Figure("k", "label", "ms", [3.0, 1.0, 2.0])
    assert (fig.median, fig.low, fig.high) == (2.0, 1.0, 3.0)
