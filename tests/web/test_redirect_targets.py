"""The redrive form's `next` target (issue 13, point 9): only a path on this site, whatever
characters a browser would drop from it; a target that cannot be a header is ignored, not a 500."""
from __future__ import annotations

import re

import pytest

from engine import store
from engine.submit import submit_run
from tests.helpers import make_run, step
from tests.web.test_pages import csrf


@pytest.fixture
def step_id(conn, settings) -> int:  # noqa: ANN001 - fixtures
    """A step that is not dead-lettered: redriving it is refused, and the form redirects."""
    run_id, _ = submit_run(conn, make_run(step("tool_call.a", tool="fetch_data")), settings)
    return store.run_get(conn, run_id).steps[0].id

OFF_SITE = ["/\t/evil.example/", "/\n/evil.example", "/ /evil.example", "//evil.example", "/\\evil.example",
            "https://evil.example/", "/\r\nSet-Cookie: x=1", "/\x7f/evil.example"]


@pytest.mark.parametrize("target", OFF_SITE, ids=range(len(OFF_SITE)))
def test_the_redrive_forms_next_never_leaves_the_site(client, step_id, target):
    response = client.post(f"/steps/{step_id}/redrive", data={"csrf_token": csrf(client), "next": target})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert re.match(r"/[^/\\]", location) and "evil" not in location and "\n" not in location, location


def test_a_local_next_is_followed(client, step_id):
    response = client.post(f"/steps/{step_id}/redrive", data={"csrf_token": csrf(client), "next": "/runs?page=2"})
    assert response.headers["Location"] == "/runs?page=2"
