"""`llm_call` steps: an OpenAI-compatible `/chat/completions` endpoint when LLM_BASE_URL is set,
otherwise a deterministic offline model that writes a real summary of the step's inputs. Both
stream: the text is stored as it arrives (`engine.tools.llm_stream`), and the attempt's usage
(tokens, model, latency, cost by LLM_PRICES) is recorded for run totals, budgets and /metrics.

Errors follow the retry policy: 429 (honouring Retry-After) pauses the step's provider limit key
and is retried without using up the attempt, 5xx and broken streams are retried, other 4xx are
permanent (a bad request will not get better), network errors are transient.
"""
from __future__ import annotations

import json
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from typing import Any

from engine.errors import PermanentError, RetryAfter
from engine.store.provider_limits import limit_pause
from engine.store.streams import UsageRecord, llm_usage_record
from engine.tools import StepContext
from engine.tools.llm_stream import (
    Completion,
    StreamWriter,
    cost_usd,
    count_tokens,
    offline_words,
    open_stream,
    parse_prices,
    read_sse,
)

DEFAULT_PROMPT = "Summarize the findings."
OFFLINE_MODEL = "offline-extractive-1"
SYSTEM_PROMPT = "You are a concise analyst. Answer in at most 5 sentences."


def llm_call(ctx: StepContext) -> dict:
    prompt = str(ctx.input.get("prompt") or DEFAULT_PROMPT)
    started = time.monotonic()
    writer = _writer(ctx)
    on_text: Callable[[str], None] = writer.write if writer else (lambda text: None)
    try:
        if ctx.settings.llm_base_url:
            model, provider = str(ctx.input.get("model") or ctx.settings.llm_model), "http"
            answer = _chat_completion(ctx, prompt, model, on_text)
        else:
            model, provider = OFFLINE_MODEL, "offline"
            answer = Completion(offline_summary(prompt, ctx.parents))
            offline_words(answer.text, ctx.settings.llm_offline_tokens_per_second, on_text, ctx.sleep)
    except BaseException:
        if writer:
            writer.close(final=False)  # what arrived stays, marked interrupted
        raise
    if writer:
        writer.close(final=True)
    usage = _usage(ctx, model, _user_message(ctx, prompt), answer, (time.monotonic() - started) * 1000)
    return {"summary": answer.text.strip(), "model": model, "provider": provider, "usage": usage}


def _writer(ctx: StepContext) -> StreamWriter | None:
    if ctx.connections is None or not ctx.step_id:
        return None
    return StreamWriter(ctx.connections, ctx.run_id, ctx.step_id, ctx.attempt,
                        ctx.settings.llm_stream_flush_seconds, ctx.settings.llm_stream_flush_tokens)


def _usage(ctx: StepContext, model: str, prompt_text: str, answer: Completion, latency_ms: float) -> dict:
    """The provider's usage when it gave one, else our own count; priced by LLM_PRICES; recorded."""
    prompt_tokens = answer.prompt_tokens if answer.prompt_tokens is not None else count_tokens(SYSTEM_PROMPT + prompt_text)
    completion_tokens = answer.completion_tokens if answer.completion_tokens is not None else count_tokens(answer.text)
    cost = cost_usd(parse_prices(ctx.settings.llm_prices), model, prompt_tokens, completion_tokens)
    if ctx.connections is not None and ctx.step_id:
        with ctx.connections() as conn:
            llm_usage_record(conn, UsageRecord(ctx.run_id, ctx.step_id, ctx.attempt, model, prompt_tokens,
                                               completion_tokens, cost, latency_ms))
    return {"promptTokens": prompt_tokens, "completionTokens": completion_tokens, "costUsd": round(cost, 8),
            "latencyMs": round(latency_ms, 1)}


def offline_summary(prompt: str, parents: dict[str, Any]) -> str:
    """Summarise what the parents produced: how much, from where, the dominant topics, the best
    items and any earlier summaries. Deterministic: the same inputs give the same text."""
    if not parents:
        return f"{prompt.rstrip('.')}: there were no inputs to summarise."
    items: list[dict] = []
    summaries: list[str] = []
    sources: list[str] = []
    for name in sorted(parents):
        output = parents[name]
        if not isinstance(output, dict):
            continue
        items.extend(i for i in output.get("items", []) if isinstance(i, dict))
        sources.extend(output.get("sources", []) or ([output["source"]] if output.get("source") else []))
        if output.get("summary"):
            summaries.append(str(output["summary"]))
    sentences = [f"{prompt.rstrip('.')}: {len(parents)} input step(s) were combined"
                 + (f" covering {len(set(sources))} source(s)" if sources else "") + "."]
    if items:
        topics = Counter(str(i.get("topic", "other")) for i in items).most_common(3)
        scores = [float(i.get("score", 0)) for i in items]
        best = max(items, key=lambda i: float(i.get("score", 0)))
        sentences.append(f"Across {len(items)} item(s) the main topics are "
                         + ", ".join(f"{t} ({n})" for t, n in topics) + ".")
        sentences.append(f"Scores range from {min(scores):g} to {max(scores):g} (mean {sum(scores) / len(scores):.1f});"
                         f" the strongest item is {best.get('id', '?')} on {best.get('topic', '?')}.")
    for summary in summaries[:2]:
        sentences.append(f"Earlier finding: {summary[:160]}")
    return " ".join(sentences)


def _user_message(ctx: StepContext, prompt: str) -> str:
    return f"{prompt}\n\nInputs (JSON):\n{json.dumps(ctx.parents, sort_keys=True)[:20000]}"


def _chat_completion(ctx: StepContext, prompt: str, model: str, on_text: Callable[[str], None]) -> Completion:
    settings = ctx.settings
    body = {"model": model, "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                         {"role": "user", "content": _user_message(ctx, prompt)}]}
    headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key}
    if settings.llm_api_key:
        headers["Authorization"] = f"Bearer {settings.llm_api_key}"
    url = settings.llm_base_url.rstrip("/") + "/chat/completions"
    try:
        with open_stream(url, body, headers, timeout=min(settings.step_timeout_seconds, 120)) as response:
            if "text/event-stream" in response.headers.get("Content-Type", ""):
                return read_sse(response, on_text, ctx.cancelled)
            payload = json.loads(response.read())  # a server that ignores `stream`: one answer
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        if exc.code == 429:
            seconds = _retry_after_seconds(exc.headers.get("Retry-After"))
            _pause_limit(ctx, seconds)
            raise RetryAfter(seconds, f"LLM rate limited (429): {detail}",
                             counts_as_attempt=ctx.connections is None) from None
        if exc.code >= 500:
            raise RuntimeError(f"LLM server error {exc.code}: {detail}") from None
        raise PermanentError(f"LLM request rejected ({exc.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise RuntimeError(f"LLM endpoint unreachable or stream cut: {exc}") from None
    try:
        text = str(payload["choices"][0]["message"]["content"]).strip()
    except (KeyError, IndexError, TypeError):
        raise PermanentError(f"LLM answer has no choices[0].message.content: {str(payload)[:200]}") from None
    on_text(text)
    usage = payload.get("usage") or {}
    return Completion(text, usage.get("prompt_tokens"), usage.get("completion_tokens"))


def _pause_limit(ctx: StepContext, seconds: float) -> None:
    """One 429 pauses the step's whole limit key until Retry-After, and gives this attempt back."""
    if ctx.connections is None or not ctx.step_id:
        return
    with ctx.connections() as conn:
        limit_pause(conn, ctx.limit_key or "llm", seconds, ctx.run_id, ctx.step_id, ctx.attempt)


def _retry_after_seconds(header: str | None) -> float:
    try:
        return max(0.0, min(float(header or 1), 3600.0))
    except ValueError:
        return 1.0  # an HTTP date: not worth parsing for a demo-sized delay
