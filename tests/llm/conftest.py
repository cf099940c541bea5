from tests.web.support import module_conn, module_db_url, server  # noqa: F401
