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


def test_the_agent_latency_and_dbos_keys_are_stable_and_have_targets() -> None:
    from bench.report import TARGETS
    keys = ("chain_hop_p50_ms", "chain_hop_p99_ms", "chain20_p50_ms", "agent_dag_p50_ms", "dbos_step_ms",
            "ratio_hop_to_dbos_step")
    assert all(key in STABLE_KEYS for key in keys)
    assert all(key in TARGETS for key in keys if key != "dbos_step_ms")


def test_stamps_file_round_trips_the_last_attempt_of_each_step(tmp_path) -> None:
    from types import SimpleNamespace

    from worker.stamps import StepStamps, read_stamps
    stamps = StepStamps(str(tmp_path / "w.jsonl"))
    for step_id, attempt, start in ((1, 1, 10.0), (1, 2, 20.0), (2, 1, 30.0)):
        stamps.add(SimpleNamespace(step=SimpleNamespace(id=step_id, attempt=attempt)), start, start + 1)  # type: ignore[arg-type]
    stamps.write()
    assert read_stamps(tmp_path / "w.jsonl") == {1: (20.0, 21.0), 2: (30.0, 31.0)}
