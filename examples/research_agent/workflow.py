"""The research agent's run, built with `durable_agent.Workflow`:

    tool_call.fetch_1 … fetch_N (http_fetch) ─┐
    tool_call.search_docs (doc_search) ───────┼─> tool_call.rank ─> llm_call.answer
"""
from __future__ import annotations

from durable_agent import Workflow


def research_workflow(question: str, urls: list[str], docs: str | None = None, top: int = 5) -> Workflow:
    """One fetch step per URL and a document search, ranked together, answered by an LLM step
    (any OpenAI-compatible endpoint with `LLM_BASE_URL`, else the offline model)."""
    wf = Workflow(f"Research: {question}"[:500])
    sources = [wf.step(f"tool_call.fetch_{i}", tool="http_fetch", input={"url": url, "query": question})
               for i, url in enumerate(urls, start=1)]
    if docs:
        sources.append(wf.step("tool_call.search_docs", tool="doc_search", input={"folder": docs, "query": question}))
    ranked = wf.step("tool_call.rank", tool="rank", input={"query": question, "n": top}, after=sources)
    wf.step("llm_call.answer", after=[ranked],
            prompt=f"Answer the question from the ranked sources: {question}", max_attempts=3)
    return wf
