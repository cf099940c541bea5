"""A form's `next` target (issue 13, point 9), as the Kill form sends it: only a path on this site,
whatever characters a browser would drop from it; a target that cannot be a header is ignored, not
a 500. (The redrive form has no `next`: it always shows the step's run.)"""
from __future__ import annotations

import re

import pytest

from tests.web.test_pages import csrf

# No worker has this name: the kill is refused with a message, and the form still redirects.
KILL = "/workers/nobody/kill"

OFF_SITE = ["/\t/evil.example/", "/\n/evil.example", "/ /evil.example", "//evil.example", "/\\evil.example",
            "https://evil.example/", "/\r\nSet-Cookie: x=1", "/\x7f/evil.example"]


@pytest.mark.parametrize("target", OFF_SITE, ids=range(len(OFF_SITE)))
def test_the_kill_forms_next_never_leaves_the_site(client, target):
    response = client.post(KILL, data={"csrf_token": csrf(client), "next": target})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert re.match(r"/[^/\\]|/\Z", location) and "evil" not in location and "\n" not in location, location


def test_a_local_next_is_followed(client):
    response = client.post(KILL, data={"csrf_token": csrf(client), "next": "/runs?page=2"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/runs?page=2"
