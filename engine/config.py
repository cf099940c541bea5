"""Settings read from the environment: one documented list, so the README and `--help` share it.

Each setting is (name, default, help), declared once with `setting(...)`. `Settings.from_env()` reads them once; code passes the
resulting object around instead of reading `os.environ` itself, so tests can build their own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import TypeVar

T = TypeVar("T")

DATABASE_URL_DEFAULT = "postgresql:///durable_agent"
LEASE_SECONDS_DEFAULT = 15.0
HEARTBEAT_SECONDS_DEFAULT = 5.0
RETRY_BASE_SECONDS_DEFAULT = 1.0
RETRY_MAX_SECONDS_DEFAULT = 60.0
DEFAULT_MAX_ATTEMPTS_DEFAULT = 5
WORKER_CONCURRENCY_DEFAULT = 32
REAPER_INTERVAL_SECONDS_DEFAULT = 0.2
POLL_SECONDS_DEFAULT = 2.0
SHUTDOWN_GRACE_SECONDS_DEFAULT = 10.0
STEP_TIMEOUT_SECONDS_DEFAULT = 300.0
MAX_STEPS_PER_RUN_DEFAULT = 50
MAX_EDGES_PER_RUN_DEFAULT = 400
MAX_INPUT_BYTES_DEFAULT = 65536
MAX_ACTIVE_RUNS_DEFAULT = 200
MAX_ACTIVE_RUNS_PER_CLIENT_DEFAULT = 20
RETENTION_HOURS_DEFAULT = 24.0
RESTART_GRACE_SECONDS_DEFAULT = 15.0
LLM_OFFLINE_TOKENS_PER_SECOND_DEFAULT = 30.0
LLM_STREAM_FLUSH_SECONDS_DEFAULT = 0.075
LLM_STREAM_FLUSH_TOKENS_DEFAULT = 32
LLM_PRICES_DEFAULT = "gpt-4o-mini=0.00015/0.0006,offline-extractive-1=0.00015/0.0006"
LIMIT_WINDOW_SECONDS_DEFAULT = 60.0
RESTART_RELOCK_SECONDS_DEFAULT = 3.0
MAX_MAP_ITEMS_DEFAULT = 100
MAX_CRASH_ATTEMPTS_PER_RUN_DEFAULT = 5
MAX_RUNNING_STEPS_PER_CLIENT_DEFAULT = 8
RESERVED_ACTIVE_RUNS_DEFAULT = 40
MAX_STEP_OUTPUT_BYTES_DEFAULT = 262144
MAX_PARENT_BYTES_DEFAULT = 262144
MAX_RUN_OUTPUT_BYTES_DEFAULT = 1048576
DATA_BUDGET_MB_DEFAULT = 256.0


def setting(env: str, default: T, help: str) -> T:
    """One setting of a settings dataclass: its environment variable, default (whose type is the
    setting's) and documentation, as the field's default and metadata (see `read_env`, `describe`)."""
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every tunable of the engine; the metadata `help` of each field is its documentation."""

    database_url: str = setting("DATABASE_URL", DATABASE_URL_DEFAULT,
        "libpq URL of the Postgres database (queue, locks, events, audit).")
    lease_seconds: float = setting("LEASE_SECONDS", LEASE_SECONDS_DEFAULT,
        "How long a claimed step stays leased without a heartbeat; an expired lease is reclaimed even if its worker's "
        "connection is alive.")
    heartbeat_seconds: float = setting("HEARTBEAT_SECONDS", HEARTBEAT_SECONDS_DEFAULT,
        "How often a worker renews the leases of the steps it runs.")
    retry_base_seconds: float = setting("RETRY_BASE_SECONDS", RETRY_BASE_SECONDS_DEFAULT,
        "First retry delay; doubles per attempt (half fixed, half random jitter).")
    retry_max_seconds: float = setting("RETRY_MAX_SECONDS", RETRY_MAX_SECONDS_DEFAULT, "Cap of the retry delay.")
    default_max_attempts: int = setting("DEFAULT_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS_DEFAULT,
        "Attempts of a step that sets no `maxAttempts`.")
    worker_concurrency: int = setting("WORKER_CONCURRENCY", WORKER_CONCURRENCY_DEFAULT,
        "Step slots (threads) per worker process.")
    reaper_interval_seconds: float = setting("REAPER_INTERVAL_SECONDS", REAPER_INTERVAL_SECONDS_DEFAULT,
        "How often each worker's reaper looks for dead workers and expired leases; bounds crash detection time.")
    poll_seconds: float = setting("POLL_SECONDS", POLL_SECONDS_DEFAULT,
        "Longest a worker waits for a NOTIFY before it polls anyway.")
    shutdown_grace_seconds: float = setting("SHUTDOWN_GRACE_SECONDS", SHUTDOWN_GRACE_SECONDS_DEFAULT,
        "On SIGTERM, how long running steps may finish before the worker releases them to other workers and exits.")
    step_timeout_seconds: float = setting("STEP_TIMEOUT_SECONDS", STEP_TIMEOUT_SECONDS_DEFAULT,
        "Timeout of a step that sets no `timeoutSeconds`.")
    max_steps_per_run: int = setting("MAX_STEPS_PER_RUN", MAX_STEPS_PER_RUN_DEFAULT, "Largest run accepted, in steps.")
    max_edges_per_run: int = setting("MAX_EDGES_PER_RUN", MAX_EDGES_PER_RUN_DEFAULT, "Largest run accepted, in dependency edges.")
    max_input_bytes: int = setting("MAX_INPUT_BYTES", MAX_INPUT_BYTES_DEFAULT,
        "Largest total size of the steps' inputs of one run (JSON bytes); also of a signal's payload.")
    max_map_items: int = setting("MAX_MAP_ITEMS", MAX_MAP_ITEMS_DEFAULT,
        "Most children one map step may expand into; also the default and the upper bound of a step's `maxItems`.")
    max_crash_attempts_per_run: int = setting("MAX_CRASH_ATTEMPTS_PER_RUN", MAX_CRASH_ATTEMPTS_PER_RUN_DEFAULT,
        "Most worker crashes one run may cause: the `maxAttempts` of its steps with the `crash` knob, added up (each such "
        "attempt kills a worker); 0 refuses the knob.")
    max_running_steps_per_client: int = setting("MAX_RUNNING_STEPS_PER_CLIENT", MAX_RUNNING_STEPS_PER_CLIENT_DEFAULT,
        "Steps of one web client's runs that may run at once over all workers: a fair share of the slots, so another "
        "visitor's step starts at once however many long steps one submitted (runs submitted outside the web app are not "
        "capped); 0 disables it.")
    max_step_output_bytes: int = setting("MAX_STEP_OUTPUT_BYTES", MAX_STEP_OUTPUT_BYTES_DEFAULT,
        "Largest output a step may return (JSON bytes); a bigger one dead-letters the step with a message saying so.")
    max_parent_bytes: int = setting("MAX_PARENT_BYTES", MAX_PARENT_BYTES_DEFAULT,
        "Largest total of the parents' outputs a step may receive (JSON bytes); past it the step is dead-lettered with a "
        "message saying so, without loading them. With MAX_STEP_OUTPUT_BYTES it bounds a worker's memory (README: memory).")
    max_run_output_bytes: int = setting("MAX_RUN_OUTPUT_BYTES", MAX_RUN_OUTPUT_BYTES_DEFAULT,
        "Largest total of the outputs one run may store (bytes); the step that would pass it is dead-lettered saying so. "
        "With MAX_ACTIVE_RUNS it bounds what active runs can store (README: disk).")
    max_active_runs: int = setting("MAX_ACTIVE_RUNS", MAX_ACTIVE_RUNS_DEFAULT,
        "Running runs allowed at once over all clients of the web app; 0 disables the cap.")
    max_active_runs_per_client: int = setting("MAX_ACTIVE_RUNS_PER_CLIENT", MAX_ACTIVE_RUNS_PER_CLIENT_DEFAULT,
        "Running runs allowed at once per web client (by address); 0 disables the cap.")
    reserved_active_runs: int = setting("RESERVED_ACTIVE_RUNS", RESERVED_ACTIVE_RUNS_DEFAULT,
        "Of MAX_ACTIVE_RUNS, the last places kept for web clients with no active run, so that a few busy clients cannot lock "
        "everyone else out; 0 keeps none.")
    retention_hours: float = setting("RETENTION_HOURS", RETENTION_HOURS_DEFAULT,
        "Finished runs older than this are pruned with their steps and audit rows; 0 keeps everything.")
    data_budget_mb: float = setting("DATA_BUDGET_MB", DATA_BUDGET_MB_DEFAULT,
        "Disk budget of the runs' data (inputs, outputs, audit rows); past it, the oldest finished runs are pruned, whatever "
        "their age, until it is 90 % used; 0 disables it.")
    restart_grace_seconds: float = setting("RESTART_GRACE_SECONDS", RESTART_GRACE_SECONDS_DEFAULT,
        "After Postgres (re)starts, the longest a free liveness lock is not read as a dead worker, so live workers can "
        "reconnect first (RESTART_RELOCK_SECONDS ends it sooner for each worker).")
    restart_relock_seconds: float = setting("RESTART_RELOCK_SECONDS", RESTART_RELOCK_SECONDS_DEFAULT,
        "Ends the restart grace early: once a worker has re-taken its liveness lock after a restart, workers that have not "
        "re-taken theirs within this long are read as dead; a worker that re-took its lock is read as dead as soon as it is "
        "free again.")
    llm_base_url: str = setting("LLM_BASE_URL", "",
        "OpenAI-compatible endpoint for `llm_call` steps (e.g. https://api.openai.com/v1); empty uses the deterministic "
        "offline model.")
    llm_api_key: str = setting("LLM_API_KEY", "", "Bearer token sent to LLM_BASE_URL.")
    llm_model: str = setting("LLM_MODEL", "gpt-4o-mini", "Model name sent to LLM_BASE_URL.")
    tool_modules: str = setting("TOOL_MODULES", "",
        "Comma-separated import paths of users' tool modules a worker loads (as well as `--tools`); a module that fails to "
        "import stops the worker.")
    llm_offline_tokens_per_second: float = setting("LLM_OFFLINE_TOKENS_PER_SECOND", LLM_OFFLINE_TOKENS_PER_SECOND_DEFAULT,
        "Pace at which the offline model streams its words (a realistic provider's); 0 streams them all at once.")
    llm_stream_flush_seconds: float = setting("LLM_STREAM_FLUSH_SECONDS", LLM_STREAM_FLUSH_SECONDS_DEFAULT,
        "Streamed text is written to Postgres in one transaction per batch: at most this long after its first token ...")
    llm_stream_flush_tokens: int = setting("LLM_STREAM_FLUSH_TOKENS", LLM_STREAM_FLUSH_TOKENS_DEFAULT,
        "... or as soon as this many tokens wait, whichever comes first.")
    llm_prices: str = setting("LLM_PRICES", LLM_PRICES_DEFAULT,
        "USD per 1K prompt/completion tokens by model, `model=in/out` comma-separated; a model not listed costs 0. The "
        "offline model is priced like gpt-4o-mini so the demo shows a cost.")
    llm_limits: str = setting("LLM_LIMITS", "",
        "Provider limits as JSON, e.g. `{\"llm\": {\"concurrency\": 4, \"requestsPerMinute\": 60, \"tokensPerMinute\": "
        "100000}}`; written to table provider_limits at worker start (see \"Provider limits\").")
    limit_window_seconds: float = setting("LIMIT_WINDOW_SECONDS", LIMIT_WINDOW_SECONDS_DEFAULT,
        "Length of the \"minute\" of requestsPerMinute and tokensPerMinute (shorter in tests).")
    worker_name: str = setting("WORKER_NAME", "",
        "Name of a `python -m worker` started without `--name`, shown in events and on the dashboard; empty uses "
        "worker-HOST-PID.")
    log_level: str = setting("LOG_LEVEL", "INFO", "Log level of workers and the web app (DEBUG, INFO, WARNING, ERROR).")
    step_stamps_file: str = setting("STEP_STAMPS_FILE", "",
        "Benchmark instrumentation: a file the worker appends each handler's start and end times to (JSON lines, written "
        "when it stops); empty records nothing.")
    chaos_seed: str = setting("CHAOS_SEED", "",
        "Seeds each worker's random draws for the `failureRate` chaos knob (with the worker's name, so workers differ); "
        "empty draws unseeded.")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from the environment; a malformed number is a clear error."""
        return read_env(cls, environ, overrides)


def read_env(cls: type[T], environ: dict[str, str] | None, overrides: dict[str, object]) -> T:
    """Build a settings dataclass whose fields carry `env` metadata from the environment: each
    field's type is its default's (str, int, float or bool); empty or unset keeps the default."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        raw = environ.get(f.metadata["env"])
        if raw is not None and raw != "":
            values[f.name] = parse_value(f.metadata["env"], raw, type(f.default))
    values.update(overrides)
    return cls(**values)


def parse_value(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        what = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def describe(cls: type) -> list[tuple[str, object, str]]:
    """(environment name, default, help) of every field, for docs and `--help`."""
    return [(f.metadata["env"], f.default, f.metadata["help"]) for f in fields(cls)]


def documented_settings() -> list[tuple[str, object, str]]:
    return describe(Settings)
