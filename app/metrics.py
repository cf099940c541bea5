"""`GET /metrics`: Prometheus gauges computed from Postgres at scrape time by a custom collector.
They stay right across worker crashes and web restarts, because nothing is counted in memory."""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app.state import db
from engine.model import StepStatus, Usage
from engine.store.dashboard import queue_snapshot
from engine.store.streams import usage_by_model


class QueueCollector:
    """Reads one queue snapshot per scrape."""

    def collect(self) -> Iterator[Metric]:
        with db() as conn:
            snapshot = queue_snapshot(conn)
            models = usage_by_model(conn)
        steps = GaugeMetricFamily("dae_steps", "Steps by status.", labels=["status"])
        for status, count in snapshot.steps.items():
            steps.add_metric([status.value], count)
        yield steps
        runs = GaugeMetricFamily("dae_runs", "Runs by status.", labels=["status"])
        for status, count in snapshot.runs.items():
            runs.add_metric([status.value], count)
        yield runs
        yield GaugeMetricFamily("dae_steps_claimable", "Ready steps whose time has come (the queue depth).",
                                value=snapshot.claimable)
        yield GaugeMetricFamily("dae_steps_retrying", "Ready steps waiting out a retry backoff.",
                                value=snapshot.retrying)
        yield GaugeMetricFamily("dae_oldest_ready_step_age_seconds",
                                "Age of the oldest claimable step (0 when none waits).",
                                value=snapshot.oldest_ready_seconds)
        yield GaugeMetricFamily("dae_dead_letters", "Dead-lettered steps.", value=snapshot.steps[StepStatus.DEAD_LETTER])
        yield GaugeMetricFamily("dae_workers_alive", "Workers registered as running.",
                                value=snapshot.workers_alive)
        yield GaugeMetricFamily("dae_audit_last_event_id", "Newest audit event id (a rate of events).",
                                value=snapshot.last_event_id)
        yield from llm_metrics(models)


def llm_metrics(models: list[Usage]) -> Iterator[Metric]:
    """Counters by model, summed from the stored usage of every LLM attempt (pruned runs drop out,
    as a restarted exporter's counters would)."""
    calls = CounterMetricFamily("dae_llm_calls", "LLM attempts that got an answer.", labels=["model"])
    tokens = CounterMetricFamily("dae_llm_tokens", "LLM tokens used.", labels=["model", "kind"])
    cost = CounterMetricFamily("dae_llm_cost_usd", "LLM cost by LLM_PRICES, in USD.", labels=["model"])
    for usage in models:
        calls.add_metric([usage.model or ""], usage.calls)
        tokens.add_metric([usage.model or "", "prompt"], usage.prompt_tokens)
        tokens.add_metric([usage.model or "", "completion"], usage.completion_tokens)
        cost.add_metric([usage.model or ""], usage.cost_usd)
    yield from (calls, tokens, cost)


def metrics_text() -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
