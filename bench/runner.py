"""Runs the selected benchmarks in order on one server and gathers their figures. Throughput and
the peers go first, on the server's own settings; then commit timestamps are turned on for the
latency benchmarks. A benchmark that fails or cannot run is reported, and the others still run."""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from bench.figures import BenchResult, Figure, Unavailable
from bench.server import BenchServer


class Runner:
    def __init__(self, server: BenchServer, sizes: dict[str, float], selected: list[str],
                 progress: Callable[[str], None]) -> None:
        self.server = server
        self.sizes = {key: int(value) for key, value in sizes.items()}
        self.selected = selected
        self.progress = progress
        self.info_before = server.info()
        self.commit_timestamps = False
        self.results: list[BenchResult] = []

    def run_all(self) -> list[BenchResult]:
        if "throughput" in self.selected or "peers" in self.selected:
            self._run("throughput and peers", self._throughput)
        if any(name in self.selected for name in ("handoff", "chains", "live")):
            self.commit_timestamps = self.server.enable_commit_timestamps()
        steps = {"handoff": self._handoff, "chains": self._chains, "submit": self._submit, "live": self._live,
                 "resources": self._resources, "recovery": self._recovery, "llm_stream": self._llm_stream}
        for name, step in steps.items():
            if name in self.selected:
                self._run(name, step)
        self._combine_worker_rss()
        return self.results

    def _run(self, name: str, step: Callable[[BenchResult], None]) -> None:
        self.progress(f"{name} ...")
        result = BenchResult(name)
        started = time.monotonic()
        try:
            step(result)
        except Unavailable as exc:
            result.unavailable = str(exc)
        except Exception as exc:  # noqa: BLE001 - one benchmark failing must not stop the others
            traceback.print_exc()
            result.unavailable = f"failed: {type(exc).__name__}: {exc}".strip()
        result.seconds = time.monotonic() - started
        self.progress(f"{name}: {result.seconds:.0f}s" + (f" ({result.unavailable})" if result.unavailable else ""))
        self.results.append(result)

    # -- the benchmarks ------------------------------------------------------------------------

    def _throughput(self, result: BenchResult) -> None:
        from bench.throughput import run_throughput_bench
        figures, unavailable = run_throughput_bench(self.server, self.sizes["jobs"], self.sizes["repeats"],
                                                    with_peers="peers" in self.selected)
        result.figures = [f for f in figures if f.samples or "peers" in self.selected]
        if unavailable:
            result.unavailable = "; ".join(f"{key}: {why}" for key, why in unavailable.items())

    def _handoff(self, result: BenchResult) -> None:
        from bench.handoff import run_handoff_bench
        result.figures = run_handoff_bench(self.server, self.sizes["handoffs"], self.sizes["handoff_repeats"],
                                           self.commit_timestamps)

    def _chains(self, result: BenchResult) -> None:
        from bench.chains import run_chains_bench
        result.figures, dbos_missing = run_chains_bench(
            self.server, self.sizes["chains"], self.sizes["dags"], self.sizes["chain_repeats"],
            self.sizes["dbos_jobs"], self.commit_timestamps)
        result.unavailable = f"DBOS: {dbos_missing}" if dbos_missing else None

    def _submit(self, result: BenchResult) -> None:
        from bench.submit_latency import run_submit_bench
        result.figures = run_submit_bench(self.server, self.sizes["submits"], self.sizes["submit_repeats"])

    def _live(self, result: BenchResult) -> None:
        from bench.live_view import run_live_bench
        result.figures = run_live_bench(self.server, self.sizes["live_steps"], self.sizes["live_repeats"],
                                        self.commit_timestamps)

    def _llm_stream(self, result: BenchResult) -> None:
        from bench.llm_stream import run_llm_stream_bench
        result.figures = run_llm_stream_bench(self.server, int(self.sizes["stream_tokens"]),
                                              int(self.sizes["stream_repeats"]))

    def _resources(self, result: BenchResult) -> None:
        from bench.resources import run_resources_bench
        result.figures, note = run_resources_bench(self.server, self.sizes["load_runs"], self.sizes["idle_seconds"],
                                                   self.sizes["resource_repeats"])
        result.unavailable = note or None

    def _recovery(self, result: BenchResult) -> None:
        try:
            from bench.recovery import run_recovery_bench
        except ImportError as exc:
            raise Unavailable(f"bench.recovery is not there yet ({exc})") from None
        url = self.server.fresh_database("recovery")
        repeats = self.sizes["recovery_repeats"]
        try:
            figures = run_recovery_bench(url, repeats=repeats)
        finally:
            self.server.drop(url)
        labels = {"recovery_median_s": "kill -9 → step_reclaimed, median", "recovery_max_s": "kill -9 → step_reclaimed, max",
                  "restart_median_s": "kill -9 → step restarted, median", "restart_max_s": "kill -9 → step restarted, max"}
        result.figures = [Figure(key, label, "s", [float(figures[key])], f"{repeats} kills" if i == 0 else "")
                          for i, (key, label) in enumerate(labels.items()) if figures.get(key) is not None]

    def _combine_worker_rss(self) -> None:
        """`worker_rss_mb` (a stable key) is the worst peak seen: idle-after-load or under full load."""
        figures = {f.key: f for r in self.results for f in r.figures}
        at_rest, under_load = figures.get("worker_rss_mb"), figures.get("worker_rss_under_load_mb")
        if under_load and under_load.samples and (at_rest is None or not at_rest.samples):
            self.results[0].figures.append(Figure("worker_rss_mb", "worker peak RSS", "MB", list(under_load.samples)))
        elif at_rest and under_load and under_load.samples and under_load.median > at_rest.median:
            at_rest.samples = list(under_load.samples)
            at_rest.note = "peak under the throughput load"
