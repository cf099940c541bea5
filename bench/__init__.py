"""Benchmarks of the engine and of its peers: `python -m bench [--quick] [--json FILE]`.

One module per benchmark (throughput, peers, handoff, submit_latency, live_view, resources; the
recovery benchmark is `bench.recovery`). Each returns `Figure`s; `bench.report` prints the table
and writes the JSON with the stable keys of `bench.report.STABLE_KEYS`. Never part of the pass/fail suite.
"""
