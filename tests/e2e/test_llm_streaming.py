"""The demo with no API key: the run page of "Research and summarize" shows the summary streaming
in word by word under its step, then the run's tokens and cost. Writes llm-streaming.png and
llm-run-cost.png to artifacts/screenshots/ (and to docs/ with DOCS_SCREENSHOTS=1)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from engine.pgcluster import PgCluster
from tests.e2e.test_dashboard import submit_from_form
from tests.helpers import ROOT, WorkerProcess
from tests.web.support import WebServer, create_database, drop_database

pytestmark = pytest.mark.e2e

DOCS = ROOT / "docs"


@dataclass
class StreamingStack:
    server: WebServer


@pytest.fixture(scope="module")
def streaming_stack(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamingStack]:
    """Its own database, web app and one worker whose offline model streams at a reader's pace."""
    name = create_database(pg, "e2e_llm_")
    url = pg.url(name)
    logs = tmp_path_factory.mktemp("e2e-llm")
    server = WebServer(url, logs).start()
    worker = WorkerProcess(url, "worker-1", 4, env={"LLM_OFFLINE_TOKENS_PER_SECOND": "10"}, log_dir=logs)
    yield StreamingStack(server)
    worker.stop()
    server.stop()
    drop_database(pg, name)


def test_the_summary_streams_in_and_the_run_shows_its_tokens_and_cost(page: Page, streaming_stack, screenshots):
    folders = [screenshots, *([DOCS] if os.environ.get("DOCS_SCREENSHOTS") else [])]
    submit_from_form(page, streaming_stack, "research")
    streaming = page.locator(".stream-part.stream-streaming .stream-text")
    expect(streaming).to_be_visible(timeout=30_000)
    first = streaming.inner_text()
    expect(streaming).not_to_have_text(first, timeout=10_000)  # it grows without a reload
    page.wait_for_function("() => document.querySelector('.stream-part.stream-streaming .stream-text')"
                           "?.textContent.split(' ').length > 25", timeout=30_000)
    expect(page.locator("#run-tokens")).to_be_visible()
    for folder in folders:
        page.screenshot(path=str(folder / "llm-streaming.png"), full_page=True)
    expect(page.locator("#run-header")).to_have_attribute("data-status", "completed", timeout=60_000)
    for folder in folders:
        page.screenshot(path=str(folder / "llm-run-cost.png"), full_page=True)
    expect(page.locator(".stream-part.stream-complete")).to_have_count(1)
    assert int(page.locator("#run-tokens").inner_text()) > 50
    assert page.locator("#run-cost").inner_text().startswith("$0.0")
    assert "offline-extractive-1" in page.locator(".stream-usage").inner_text()
    assert "interrupted" not in page.locator("#steps").inner_text()
