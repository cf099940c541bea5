"""Streaming for `llm_call`: read an OpenAI-compatible server-sent-event stream, pace the offline
model's words, and write the text to Postgres in batches (`StreamWriter`); count tokens and price
them (`LLM_PRICES`).

Batching is what keeps streaming cheap: one transaction per `LLM_STREAM_FLUSH_SECONDS` (or per
`LLM_STREAM_FLUSH_TOKENS` tokens), never one per token, each announced with NOTIFY after its commit.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID

import psycopg

from engine.store.streams import stream_append

log = logging.getLogger("engine.llm")

TOKEN = re.compile(r"\w+|[^\w\s]")
WORD = re.compile(r"\S+\s*")

ConnectionSource = Callable[[], AbstractContextManager[psycopg.Connection]]


def count_tokens(text: str) -> int:
    """The offline model's token count: words and punctuation marks (close to a BPE count for English)."""
    return len(TOKEN.findall(text))


def parse_prices(spec: str) -> dict[str, tuple[float, float]]:
    """`model=in/out,...` (USD per 1K prompt / completion tokens) → {model: (in, out)}."""
    prices: dict[str, tuple[float, float]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            model, pair = item.rsplit("=", 1)
            price_in, price_out = pair.split("/")
            prices[model.strip()] = (float(price_in), float(price_out))
        except ValueError:
            raise ValueError(f"LLM_PRICES: {item!r} is not model=in/out (USD per 1K tokens)") from None
    return prices


def cost_usd(prices: dict[str, tuple[float, float]], model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price_in, price_out = prices.get(model, (0.0, 0.0))
    return prompt_tokens / 1000 * price_in + completion_tokens / 1000 * price_out


class StreamWriter:
    """Collects an attempt's tokens and stores them in batches. `write` never waits for the
    database unless a batch is full; a timer thread flushes a batch that has waited long enough,
    so a stalled stream still shows what arrived. Database trouble costs the live view, never
    the step: the full text is the step's output anyway."""

    def __init__(self, connections: ConnectionSource, run_id: UUID, step_id: int, attempt: int,
                 flush_seconds: float, flush_tokens: int) -> None:
        self.connections = connections
        self.run_id, self.step_id, self.attempt = run_id, step_id, attempt
        self.flush_seconds = max(0.001, flush_seconds)
        self.flush_tokens = max(1, flush_tokens)
        self.pending: list[str] = []
        self.first_pending_at = 0.0
        self.lock = threading.Lock()          # pending and the flags
        self.flush_lock = threading.Lock()    # one batch in flight, batches in order
        self.wake = threading.Condition(self.lock)
        self.closed = False
        self.fenced = False  # the attempt lost the step: stop writing
        self.transactions = 0
        self.timer = threading.Thread(target=self._timer_loop, name=f"stream-{step_id}", daemon=True)
        self.timer.start()

    def write(self, token: str) -> None:
        if not token:
            return
        with self.lock:
            if not self.pending:
                self.first_pending_at = time.monotonic()
                self.wake.notify()
            self.pending.append(token)
            full = len(self.pending) >= self.flush_tokens
        if full:
            self.flush()

    def close(self, final: bool) -> None:
        """Flush what is left; `final` marks the attempt's stream as complete."""
        with self.lock:
            self.closed = True
            self.wake.notify()
        self.flush(final=final)
        self.timer.join(timeout=1)

    def flush(self, final: bool = False) -> None:
        with self.flush_lock:
            with self.lock:
                text, self.pending = "".join(self.pending), []
            if self.fenced or (not text and not final):
                return
            try:
                with self.connections() as conn:
                    end = stream_append(conn, self.run_id, self.step_id, self.attempt, text, final)
                self.transactions += 1
                if end is None and text:
                    self.fenced = True
            except Exception as exc:  # noqa: BLE001 - the live view is best effort; the output is not
                log.warning("could not store streamed text of step %s: %s", self.step_id, exc)

    def _timer_loop(self) -> None:
        with self.lock:
            while not self.closed:
                if not self.pending:
                    self.wake.wait()
                    continue
                due = self.first_pending_at + self.flush_seconds - time.monotonic()
                if due > 0:
                    self.wake.wait(due)
                    continue
                self.lock.release()
                try:
                    self.flush()
                finally:
                    self.lock.acquire()


@dataclass
class Completion:
    """An answer and its usage (None when the provider did not say)."""
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class StreamBroken(RuntimeError):
    """The provider's stream ended before `data: [DONE]`: a transient failure."""


def read_sse(response: Iterator[bytes], on_text: Callable[[str], None],
             cancelled: threading.Event) -> Completion:
    """Consume an OpenAI-compatible event stream: `data: {json}` lines whose
    `choices[0].delta.content` carry text, a last chunk with `usage`, then `data: [DONE]`."""
    parts: list[str] = []
    answer = Completion("")
    for raw in response:
        if cancelled.is_set():
            raise StreamBroken("attempt taken away while streaming")
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue  # comments (": keep-alive"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            answer.text = "".join(parts)
            return answer
        chunk = json.loads(data)
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                parts.append(text)
                on_text(text)
        usage = chunk.get("usage")
        if usage:
            answer.prompt_tokens = int(usage.get("prompt_tokens", 0))
            answer.completion_tokens = int(usage.get("completion_tokens", 0))
    raise StreamBroken(f"LLM stream ended without [DONE] after {sum(map(len, parts))} characters")


def open_stream(url: str, body: dict, headers: dict[str, str], timeout: float) -> urllib.request.addinfourl:
    """POST a chat completion with `stream: true`, asking for usage in the final chunk."""
    data = json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}).encode()
    request = urllib.request.Request(url, data=data, headers={**headers, "Accept": "text/event-stream"}, method="POST")
    return urllib.request.urlopen(request, timeout=timeout)


def offline_words(text: str, tokens_per_second: float, on_text: Callable[[str], None],
                  sleep: Callable[[float], None]) -> None:
    """Stream `text` word by word at `tokens_per_second` (0: all at once), as a provider would."""
    for word in WORD.findall(text):
        if tokens_per_second > 0:
            sleep(count_tokens(word) / tokens_per_second)
        on_text(word)
