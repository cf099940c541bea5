"""Submit latency: `POST /runs` of a 10-step DAG, measured at the client (request sent → response
read) over a kept-alive connection, against `python -m app` with two workers running the runs."""
from __future__ import annotations

import time
from typing import Any

from bench.appliance import Appliance
from bench.figures import Figure, collect, percentile
from bench.server import BenchServer

WARMUP_REQUESTS = 5


def ten_step_dag(index: int) -> dict[str, Any]:
    """Four sources, two merges, a ranking, an LLM summary, statistics and a notification."""
    fetch = [{"name": f"tool_call.fetch_{i}", "input": {"tool": "fetch_data", "query": f"topic {index}-{i}"}}
             for i in range(4)]
    return {"goal": f"bench submit {index}", "steps": [
        *fetch,
        {"name": "tool_call.merge_a", "input": {"tool": "transform"}, "dependsOn": ["tool_call.fetch_0", "tool_call.fetch_1"]},
        {"name": "tool_call.merge_b", "input": {"tool": "transform"}, "dependsOn": ["tool_call.fetch_2", "tool_call.fetch_3"]},
        {"name": "tool_call.rank", "input": {"tool": "transform", "op": "top", "n": 5},
         "dependsOn": ["tool_call.merge_a", "tool_call.merge_b"]},
        {"name": "llm_call.summarize", "input": {"prompt": "Summarize the findings."}, "dependsOn": ["tool_call.rank"]},
        {"name": "tool_call.stats", "input": {"tool": "transform", "op": "stats"}, "dependsOn": ["tool_call.rank"]},
        {"name": "tool_call.notify", "input": {"tool": "notify"}, "dependsOn": ["llm_call.summarize", "tool_call.stats"]},
    ]}


def measure_submits(appliance: Appliance, requests: int) -> dict[str, float]:
    for i in range(WARMUP_REQUESTS):
        _submit(appliance, ten_step_dag(-1 - i))
    timings = []
    for i in range(requests):
        started = time.perf_counter()
        _submit(appliance, ten_step_dag(i))
        timings.append((time.perf_counter() - started) * 1000)
    return {"submit_p50_ms": percentile(timings, 50), "submit_p99_ms": percentile(timings, 99)}


def _submit(appliance: Appliance, body: dict[str, Any]) -> None:
    status, answer = appliance.post_json("/runs", body)
    if status != 201:
        raise RuntimeError(f"POST /runs answered {status}: {answer}")


SPECS = {"submit_p50_ms": ("submit POST /runs (10 steps) p50", "ms"),
         "submit_p99_ms": ("submit POST /runs p99", "ms")}


def run_submit_bench(server: BenchServer, requests: int, repeats: int) -> list[Figure]:
    samples = []
    for _ in range(repeats):
        with Appliance(server, "submit") as appliance:
            samples.append(measure_submits(appliance, requests))
    return collect(samples, SPECS, {"submit_p50_ms": f"{requests} requests per repeat, keep-alive, 2 workers busy"})
