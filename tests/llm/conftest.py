"""Fixtures of the LLM tests: the web server of tests.web, and `fake_llm`, a list the test appends
its local OpenAI-compatible servers to (each is closed at the end)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.fake_llm import FakeLLM
from tests.web.support import module_conn, module_db_url, server  # noqa: F401


@pytest.fixture
def fake_llm() -> Iterator[list[FakeLLM]]:
    servers: list[FakeLLM] = []
    yield servers
    for fake in servers:
        fake.close()
