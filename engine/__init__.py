"""Durable Agent Engine core: the store (all SQL), DAG validation, retries, tools, events, config.

`app` and `worker` import this package; it imports neither of them.
"""
