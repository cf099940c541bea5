"""A hostile visitor against the signal endpoint and the `?streams=` resume of streamed LLM text,
on a real gunicorn server with real workers and per-client rate limits on (clients are told apart
by the `X-Client` header, as behind a proxy):

- payloads a run's input could not be (NaN, NUL, lone surrogates, deep nesting, more than
  MAX_INPUT_BYTES) are 400s, never 500s, and nothing of them is stored;
- refused signals (to a wait already resolved) are kept up to REFUSED_SIGNALS_KEPT_PER_RUN per run,
  then answered 409 without growing the run's data;
- one client flooding the endpoint is held to ACTIONS_PER_WINDOW while another client's approval
  goes through and its run completes;
- resume offsets beyond what the text has (up to the 10 digits a request may carry) read nothing
  instead of failing the socket or the stream endpoint.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import websocket

from engine import store
from engine.primitives import REFUSED_SIGNALS_KEPT_PER_RUN
from engine.verify import verify_run
from tests.api.test_primitives_api import approval_run, wait_run, wait_waiting
from tests.helpers import make_run, step
from tests.web.support import WebServer
from tests.web.support import submit_as as submit

ACTIONS = 60
HUGE_OFFSET = 9_999_999_999  # ten digits: the most a `streams` pair or `offset` may carry


@pytest.fixture(scope="module")
def web(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    server = WebServer(module_db_url, tmp_path_factory.mktemp("web"), CLIENT_IP_HEADER="X-Client",
                       ACTIONS_PER_WINDOW=str(ACTIONS), RATE_WINDOW_SECONDS="600").start()
    yield server
    server.stop()


def signal(web: WebServer, run_id: str, step_name: str, raw: bytes, client: str) -> tuple[int, dict]:
    status, _, data = web.request("POST", f"/api/runs/{run_id}/signals/{step_name}", raw,
                                  {"Content-Type": "application/json", "X-Client": client})
    return status, json.loads(data)


def test_payloads_a_run_could_not_hold_are_400s_and_nothing_of_them_is_stored(web, module_workers, module_conn):
    run_id = submit(web, approval_run(), "odd")
    wait_waiting(module_conn, run_id)
    odd = {
        b'{"approved": NaN}': "NaN is not a JSON number",
        b'{"comment": "\\u0000"}': "NUL",
        b'{"comment": "\\ud800"}': "lone surrogates",
        b'{"a": ' * 65 + b"1" + b"}" * 65: "nested too deeply",
        b"[" * 100_000 + b"]" * 100_000: "nested too deeply",
        json.dumps({"comment": "x" * 70_000}).encode(): "more than the limit of 65536 (MAX_INPUT_BYTES)",
    }
    for raw, message in odd.items():
        status, body = signal(web, run_id, "wait.approve", raw, f"odd-{len(raw)}")
        assert status == 400 and message in body["error"], (raw[:40], status, body)
    assert store.signals_for_run(module_conn, run_id) == []  # refused before anything was written

    status, body = signal(web, run_id, "wait.approve", json.dumps({"approved": True, "note": "x" * 60_000}).encode(),
                          "odd")
    assert status == 200 and body["status"] == "succeeded"  # a payload within the limit is taken whole
    wait_run(web, run_id, "completed")
    assert verify_run(module_conn, run_id) == []


def test_refused_signals_are_kept_up_to_the_cap_then_answered_409_without_being_stored(web, module_workers,
                                                                                       module_conn):
    run_id = submit(web, approval_run(), "late")
    wait_waiting(module_conn, run_id)
    assert signal(web, run_id, "wait.approve", b'{"approved": true}', "late")[0] == 200
    big = json.dumps({"approved": False, "comment": "y" * 60_000}).encode()
    answers = [signal(web, run_id, "wait.approve", big, f"late-{i}") for i in range(REFUSED_SIGNALS_KEPT_PER_RUN + 10)]
    assert {status for status, _ in answers} == {409}
    assert all("already resolved" in body["error"] for _, body in answers)
    assert all("not recorded" in body["error"] for _, body in answers[REFUSED_SIGNALS_KEPT_PER_RUN:])
    kept = store.signals_for_run(module_conn, run_id)
    assert sum(s.accepted for s in kept) == 1 and len(kept) == 1 + REFUSED_SIGNALS_KEPT_PER_RUN
    page_status, _, page = web.request("GET", f"/runs/{run_id}")
    assert page_status == 200 and page.count(b"refused (already resolved)") == REFUSED_SIGNALS_KEPT_PER_RUN
    wait_run(web, run_id, "completed")
    assert verify_run(module_conn, run_id) == []


def test_a_client_flooding_signals_is_rate_limited_while_another_clients_run_completes(web, module_workers,
                                                                                        module_conn):
    own = submit(web, approval_run(), "flooder")
    theirs = submit(web, approval_run(), "bystander")
    wait_waiting(module_conn, own)
    assert signal(web, own, "wait.approve", b'{"approved": true}', "flooder")[0] == 200
    big = json.dumps({"approved": True, "comment": "z" * 60_000}).encode()
    targets = [(own, "wait.approve"), (theirs, "tool_call.draft"), (theirs, "wait.nope"),
               ("00000000-0000-0000-0000-000000000000", "wait.approve")]

    def flood(i: int) -> int:
        run_id, step_name = targets[i % len(targets)]
        return signal(web, run_id, step_name, big, "flooder")[0]

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(flood, range(3 * ACTIONS)))
        wait_waiting(module_conn, theirs)  # meanwhile the bystander's run reaches its wait
        status, body = signal(web, theirs, "wait.approve", b'{"approved": true, "comment": "mine"}', "bystander")
    assert status == 200 and body["status"] == "succeeded", body
    assert codes.count(429) >= 3 * ACTIONS - ACTIONS, codes  # the window's 60, the approval above included
    assert set(codes) <= {404, 409, 429}, codes
    run = wait_run(web, theirs, "completed")
    assert next(s for s in run["steps"] if s["name"] == "wait.approve")["output"] == {"approved": True, "comment": "mine"}
    assert len(store.signals_for_run(module_conn, own)) <= 1 + REFUSED_SIGNALS_KEPT_PER_RUN
    assert [s.sender for s in store.signals_for_run(module_conn, theirs)] == ["bystander"]
    status, _, headers_body = web.request("POST", f"/api/runs/{own}/signals/wait.approve", b"{}",
                                          {"Content-Type": "application/json", "X-Client": "flooder"})
    assert status == 429 and b"too many action requests" in headers_body
    for run_id in (own, theirs):
        assert verify_run(module_conn, run_id) == []


def two_llm_steps() -> dict:
    return make_run(step("llm_call.first", prompt="Summarize one thing"),
                    step("llm_call.second", prompt="Summarize another thing"), goal="two streams")


def test_resume_offsets_past_the_text_read_nothing_and_break_nothing(web, module_workers, module_conn):
    run_id = submit(web, two_llm_steps(), "reader")
    run = wait_run(web, run_id, "completed")
    first, second = (s["id"] for s in run["steps"])
    status, body = web.json("GET", f"/api/steps/{first}/stream?offset={HUGE_OFFSET}")
    assert status == 200 and body["text"] == "" and body["parts"] == [] and body["nextOffset"] == HUGE_OFFSET
    assert web.json("GET", f"/api/steps/{first}/stream?offset={HUGE_OFFSET}0")[0] == 400  # eleven digits

    # One read serves both steps: the huge offset of the first must not cost the second its text.
    ws = websocket.create_connection(web.ws_url(f"/ws/{run_id}?streams={first}:{HUGE_OFFSET},{second}:0"),
                                     timeout=30, header={"X-Client": "reader"})
    try:
        chunks: list[dict] = []
        summary = store.run_get(module_conn, run_id).steps[1].output["summary"]
        while "".join(c["text"] for c in chunks) != summary:
            message = json.loads(ws.recv())
            if message["type"] == "llm_chunk":
                chunks.append(message)
    finally:
        ws.close()
    assert {c["stepId"] for c in chunks} == {second}

    too_many = ",".join(f"{i}:0" for i in range(1, 102))
    status, _, _ = web.request("GET", f"/ws/{run_id}?streams={too_many}")
    assert status == 400  # at most 100 streams per socket, refused before the upgrade
    assert verify_run(module_conn, run_id) == []
