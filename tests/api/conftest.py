"""Fixtures of the API tests: a real gunicorn server and real workers per test module."""
from tests.web.support import module_conn, module_db_url, module_workers, server  # noqa: F401
