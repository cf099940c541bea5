from engine import store
from engine.submit import submit_run
from engine.verify import verify_run
from tests.helpers import chain, wait_for


def test_chain_completes_with_two_workers(conn, settings, spawn):
    run_id, created = submit_run(conn, chain(5), settings)
    assert created
    spawn("w1")
    spawn("w2")
    wait_for(lambda: store.run_get(conn, run_id).status == "completed", 30, "run completed")
    assert verify_run(conn, str(run_id)) == []
