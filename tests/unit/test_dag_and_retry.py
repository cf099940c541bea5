"""Pure parts: DAG helpers, retry policy, settings, the offline model."""
from __future__ import annotations

import random

import pytest

from engine.config import Settings, documented_settings
from engine.dag import find_cycle, layers
from engine.retry import backoff_delay, is_last_attempt
from engine.tools.llm import offline_summary


def test_find_cycle_names_the_steps_in_it():
    assert find_cycle({"a": ["c"], "b": ["a"], "c": ["b"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_layers_place_each_step_below_its_deepest_parent():
    assert layers({"a": [], "b": ["a"], "c": ["a", "b"], "d": []}) == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(60, 2 ** (attempt - 1))
        delay = backoff_delay(attempt, 1, 60, rng)
        assert ceiling / 2 <= delay <= ceiling
    assert len({backoff_delay(3, 1, 60, rng) for _ in range(20)}) > 1, "jitter spreads retries"
    with pytest.raises(ValueError):
        backoff_delay(0, 1, 60)


def test_last_attempt():
    assert not is_last_attempt(4, 5) and is_last_attempt(5, 5)


def test_settings_read_environment_and_reject_garbage():
    settings = Settings.from_env({"LEASE_SECONDS": "2.5", "DEFAULT_MAX_ATTEMPTS": "7"})
    assert settings.lease_seconds == 2.5 and settings.default_max_attempts == 7
    with pytest.raises(ValueError, match="LEASE_SECONDS must be a number"):
        Settings.from_env({"LEASE_SECONDS": "soon"})
    names = [name for name, _, _ in documented_settings()]
    for required in ("LEASE_SECONDS", "HEARTBEAT_SECONDS", "RETRY_BASE_SECONDS", "RETRY_MAX_SECONDS",
                     "DEFAULT_MAX_ATTEMPTS", "WORKER_CONCURRENCY", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL",
                     "RETENTION_HOURS", "WORKER_NAME", "LOG_LEVEL", "CHAOS_SEED"):
        assert required in names


def test_offline_model_summarises_its_inputs_deterministically():
    parents = {"tool_call.a": {"source": "x", "items": [{"id": "x-1", "topic": "latency", "score": 80},
                                                         {"id": "x-2", "topic": "cost", "score": 20}]}}
    text = offline_summary("Summarize", parents)
    assert text == offline_summary("Summarize", parents)
    assert "2 item(s)" in text and "latency" in text and "x-1" in text
    assert "no inputs" in offline_summary("Summarize", {})
