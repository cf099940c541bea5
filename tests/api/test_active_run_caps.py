"""Active-run caps under concurrent submits (issue 13, point 6): the per-client cap holds exactly
however many submits race, and busy clients cannot take the last places of the global cap, which
stay for visitors with no active run. Real gunicorn, no workers (runs stay active)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.verify import verify_all
from tests.helpers import make_run, step
from tests.web.support import WebServer

CAPS = {"MAX_ACTIVE_RUNS_PER_CLIENT": "5", "MAX_ACTIVE_RUNS": "12", "RESERVED_ACTIVE_RUNS": "4",
        "CLIENT_IP_HEADER": "X-Client", "WEB_THREADS": "48", "WEB_DB_POOL_SIZE": "16"}


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[WebServer]:
    server = WebServer(db_url, tmp_path, **CAPS).start()
    yield server
    server.stop()


def flood(web: WebServer, client: str, submits: int = 40) -> Counter[int]:
    """`submits` concurrent submissions from one client; returns the count of each status."""
    body = make_run(step("tool_call.a", tool="sleep", seconds=60), goal=f"{client}'s run")
    with ThreadPoolExecutor(submits) as pool:
        statuses = pool.map(lambda _: web.json("POST", "/api/runs", body, headers={"X-Client": client})[0],
                            range(submits))
        return Counter(statuses)


def active_by_client(conn) -> dict[str, int]:  # noqa: ANN001 - a psycopg connection
    rows = conn.execute("SELECT client, count(*) AS n FROM runs WHERE status = 'running' GROUP BY client").fetchall()
    return {row["client"]: row["n"] for row in rows}


def test_concurrent_submits_never_pass_the_caps_and_newcomers_keep_a_share(web, conn):
    assert flood(web, "a") == Counter({201: 5, 429: 35})
    assert active_by_client(conn) == {"a": 5}
    # b and c, already active, may fill the global cap only up to its reserve (12 - 4 = 8): b's
    # first run and c's first run are a newcomer's; their next ones count against the rest.
    flood(web, "b")
    flood(web, "c")
    active = active_by_client(conn)
    assert active["a"] == 5 and sum(active.values()) <= 12 - 4 + 1, active
    status, answer = web.json("POST", "/api/runs", make_run(step("tool_call.a", tool="fetch_data")),
                              headers={"X-Client": "newcomer"})
    assert status == 201, answer
    # The global cap itself holds against many newcomers at once.
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: flood(web, f"n{i}", 3), range(20)))
    assert sum(active_by_client(conn).values()) == 12
    assert max(active_by_client(conn).values()) <= 5
    assert verify_all(conn) == {}
