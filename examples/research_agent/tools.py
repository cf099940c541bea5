"""The research agent's tools. Each is `fn(ctx) -> dict` registered with `@tool`.

Items follow the engine's shape (`{"id", "topic", "score"}` plus a `text` snippet), so `rank` can
merge any of them and the built-in offline model can summarise them without a network.
"""
from __future__ import annotations

import html.parser
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from durable_agent import PermanentError, RetryAfter, StepContext, tool

MAX_FETCH_BYTES = 200_000  # a page larger than this is cut here: an agent needs the gist, not the whole site
MAX_TEXT_CHARS = 4000
FETCH_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENTS = 200
MAX_DOCUMENT_BYTES = 100_000
WORD = re.compile(r"[a-z0-9]{3,}")
STOPWORDS = frozenset("the and for with that this from are was were has have not but you your can its into "
                      "what which when how why who will would could should about over than then them they".split())


def terms(text: str) -> list[str]:
    """Lower-case words of three letters or more, without the commonest English ones."""
    return [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]


def relevance(query: str, text: str) -> float:
    """Share of the query's terms found in the text, weighted by how often (0–100)."""
    wanted = set(terms(query))
    if not wanted:
        return 0.0
    counts = Counter(terms(text))
    found = sum(min(counts[t], 3) for t in wanted)
    return round(100.0 * found / (3 * len(wanted)), 1)


def top_topic(query: str, text: str) -> str:
    counts = Counter(terms(text))
    for term in terms(query):
        if counts[term]:
            return term
    return counts.most_common(1)[0][0] if counts else "empty"


class _TextExtractor(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style") and self._skip > 0
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif not self._skip and data.strip():
            self.parts.append(data.strip())


@tool("http_fetch", max_attempts=4, timeout_seconds=30, backoff=(0.5, 10))
def http_fetch(ctx: StepContext) -> dict:
    """GET `input.url` (http or https), at most `maxBytes` (200 kB) within `timeoutSeconds` (10 s);
    HTML is reduced to its text. 404-like answers are permanent, 429 and 5xx are retried."""
    url = str(ctx.input.get("url", ""))
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PermanentError(f"not an http(s) URL: {url[:200]!r}")
    max_bytes = max(1, min(int(ctx.input.get("maxBytes", MAX_FETCH_BYTES)), MAX_FETCH_BYTES))
    timeout = max(0.1, min(float(ctx.input.get("timeoutSeconds", FETCH_TIMEOUT_SECONDS)), 60.0))
    request = urllib.request.Request(url, headers={"User-Agent": "durable-agent-research/1",
                                                   "Idempotency-Key": ctx.idempotency_key})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
            content_type = response.headers.get("Content-Type", "")
            status = response.status
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            raise RetryAfter(float(exc.headers.get("Retry-After") or 1), f"{url} rate limited (429)") from None
        if exc.code >= 500:
            raise RuntimeError(f"{url} answered {exc.code}") from None
        raise PermanentError(f"{url} answered {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise RuntimeError(f"{url} unreachable: {exc}") from None
    truncated = len(body) > max_bytes
    text = body[:max_bytes].decode("utf-8", errors="replace")
    title = ""
    if "html" in content_type:
        extractor = _TextExtractor()
        extractor.feed(text)
        title, text = extractor.title, " ".join(extractor.parts)
    ctx.log.info("fetched %s: %d bytes%s", url, min(len(body), max_bytes), " (truncated)" if truncated else "")
    query = str(ctx.input.get("query", ""))
    return {"url": url, "status": status, "title": title, "truncated": truncated, "bytes": min(len(body), max_bytes),
            "items": [{"id": url, "topic": top_topic(query, text), "score": relevance(query, text),
                       "text": text[:MAX_TEXT_CHARS], "source": "web"}]}


@tool("doc_search", max_attempts=2, timeout_seconds=30)
def doc_search(ctx: StepContext) -> dict:
    """Search the `.txt` and `.md` files of `input.folder` (on the worker's machine) for
    `input.query`; returns the `limit` (5) most relevant as items with a snippet."""
    folder = Path(str(ctx.input.get("folder", "")))
    if not folder.is_dir():
        raise PermanentError(f"no such folder on this worker: {str(folder)[:200]}")
    query = str(ctx.input.get("query", ""))
    limit = max(1, min(int(ctx.input.get("limit", 5)), 50))
    found = []
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())[:MAX_DOCUMENTS]
    for path in files:
        text = path.read_bytes()[:MAX_DOCUMENT_BYTES].decode("utf-8", errors="replace")
        score = relevance(query, text)
        if score > 0:
            found.append({"id": path.name, "topic": top_topic(query, text), "score": score,
                          "text": _snippet(query, text), "source": "docs"})
    found.sort(key=lambda item: (-item["score"], item["id"]))
    ctx.log.info("searched %d document(s), %d relevant", len(files), len(found))
    return {"folder": str(folder), "searched": len(files), "items": found[:limit]}


@tool("rank", max_attempts=3)
def rank(ctx: StepContext) -> dict:
    """Merge the items of every parent, re-score them against `input.query` and keep the best `n` (5)."""
    query = str(ctx.input.get("query", ""))
    n = max(1, min(int(ctx.input.get("n", 5)), 50))
    items: list[dict[str, Any]] = []
    for parent in sorted(ctx.parents):
        output = ctx.parents[parent]
        for item in output.get("items", []) if isinstance(output, dict) else []:
            items.append({**item, "score": relevance(query, str(item.get("text", ""))), "step": parent})
    items.sort(key=lambda item: (-item["score"], str(item["id"])))
    best = items[:n]
    return {"query": query, "considered": len(items), "items": best,
            "sources": sorted({str(item["id"]) for item in best})}


def _snippet(query: str, text: str, width: int = 300) -> str:
    lowered = text.lower()
    positions = [lowered.find(term) for term in terms(query) if term in lowered]
    start = max(0, min(positions) - width // 3) if positions else 0
    return " ".join(text[start:start + width].split())
