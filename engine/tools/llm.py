"""`llm_call` steps: an OpenAI-compatible `/chat/completions` endpoint when LLM_BASE_URL is set,
otherwise a deterministic offline model that writes a real summary of the step's inputs.

Errors follow the retry policy: 429 (honouring Retry-After) and 5xx are retried, other 4xx are
permanent (a bad request will not get better), network errors are transient.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from engine.errors import PermanentError, RetryAfter
from engine.tools import StepContext

DEFAULT_PROMPT = "Summarize the findings."


def llm_call(ctx: StepContext) -> dict:
    prompt = str(ctx.input.get("prompt") or DEFAULT_PROMPT)
    if ctx.settings.llm_base_url:
        text = _chat_completion(ctx, prompt)
        return {"summary": text, "model": ctx.settings.llm_model, "provider": "http"}
    return {"summary": offline_summary(prompt, ctx.parents), "model": "offline-extractive-1",
            "provider": "offline"}


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


def _chat_completion(ctx: StepContext, prompt: str) -> str:
    settings = ctx.settings
    context = json.dumps(ctx.parents, sort_keys=True)[:20000]
    body = json.dumps({
        "model": settings.llm_model,
        "messages": [
            {"role": "system", "content": "You are a concise analyst. Answer in at most 5 sentences."},
            {"role": "user", "content": f"{prompt}\n\nInputs (JSON):\n{context}"},
        ],
    }).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key}
    if settings.llm_api_key:
        headers["Authorization"] = f"Bearer {settings.llm_api_key}"
    request = urllib.request.Request(settings.llm_base_url.rstrip("/") + "/chat/completions", data=body,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=min(ctx.settings.step_timeout_seconds, 120)) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        if exc.code == 429:
            raise RetryAfter(_retry_after_seconds(exc.headers.get("Retry-After")),
                             f"LLM rate limited (429): {detail}") from None
        if exc.code >= 500:
            raise RuntimeError(f"LLM server error {exc.code}: {detail}") from None
        raise PermanentError(f"LLM request rejected ({exc.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise RuntimeError(f"LLM endpoint unreachable: {exc}") from None
    try:
        return str(payload["choices"][0]["message"]["content"]).strip()
    except (KeyError, IndexError, TypeError):
        raise PermanentError(f"LLM answer has no choices[0].message.content: {str(payload)[:200]}") from None


def _retry_after_seconds(header: str | None) -> float:
    try:
        return max(0.0, min(float(header or 1), 3600.0))
    except ValueError:
        return 1.0  # an HTTP date: not worth parsing for a demo-sized delay
