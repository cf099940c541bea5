"""`GET /metrics`: Prometheus gauges computed from Postgres at scrape time by a custom collector.
They stay right across worker crashes and web restarts, because nothing is counted in memory."""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app.state import db
from engine.model import StepStatus
from engine.store.dashboard import queue_snapshot


class QueueCollector:
    """Reads one queue snapshot per scrape."""

    def collect(self) -> Iterator[Metric]:
        with db() as conn:
            snapshot = queue_snapshot(conn)
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


def metrics_text() -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
