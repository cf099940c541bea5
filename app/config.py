"""The web app's own settings, read from the environment beside the engine's `Settings`.

Same pattern as `engine.config`: one documented list of (name, default, help), so the README and
the tests share it. `create_app(config)` takes overrides by field name, for the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.config import describe, read_env, setting

PORT_DEFAULT = 8080
WEB_THREADS_DEFAULT = 100
WEB_DB_POOL_SIZE_DEFAULT = 8
MAX_BODY_BYTES_DEFAULT = 256 * 1024
RATE_WINDOW_SECONDS_DEFAULT = 60.0
SUBMITS_PER_WINDOW_DEFAULT = 30
ACTIONS_PER_WINDOW_DEFAULT = 60
KILLS_PER_WINDOW_DEFAULT = 10
LIVE_GAP_SECONDS_DEFAULT = 2.0
LIVE_POLL_SECONDS_DEFAULT = 1.0
BIND_ADDRESS_DEFAULT = "0.0.0.0"
REQUEST_READ_SECONDS_DEFAULT = 10.0
MAX_CONNECTIONS_PER_ADDRESS_DEFAULT = 30
MAX_SOCKETS_DEFAULT = 60
MAX_SOCKETS_PER_CLIENT_DEFAULT = 8
SOCKET_MESSAGE_BYTES_DEFAULT = 1024


@dataclass(frozen=True)
class WebSettings:
    """Every tunable of the web app; the metadata `help` of each field is its documentation."""

    port: int = setting("PORT", PORT_DEFAULT, "TCP port `python -m app` listens on.")
    bind_address: str = setting("BIND_ADDRESS", BIND_ADDRESS_DEFAULT,
        "Address `python -m app` listens on: all interfaces by default (the container needs that); 127.0.0.1 keeps it to "
        "this machine.")
    request_read_seconds: float = setting("REQUEST_READ_SECONDS", REQUEST_READ_SECONDS_DEFAULT,
        "Longest a client may take to send a request's headers and body, in total; a slower one (slowloris) is disconnected, "
        "so it cannot hold a thread.")
    max_connections_per_address: int = setting("MAX_CONNECTIONS_PER_ADDRESS", MAX_CONNECTIONS_PER_ADDRESS_DEFAULT,
        "Open TCP connections allowed per peer address; more are closed at once. Applies only when CLIENT_IP_HEADER is empty "
        "(behind a proxy every peer is the proxy); 0 disables it.")
    max_sockets: int = setting("MAX_SOCKETS", MAX_SOCKETS_DEFAULT,
        "Open WebSockets allowed at once; more are closed with code 1013 and a reason. Keep it well below WEB_THREADS: the "
        "difference is what pages, the API and /healthz always have.")
    max_sockets_per_client: int = setting("MAX_SOCKETS_PER_CLIENT", MAX_SOCKETS_PER_CLIENT_DEFAULT,
        "Open WebSockets allowed per client; more are closed with code 1013 and a reason; 0 disables the cap.")
    socket_message_bytes: int = setting("SOCKET_MESSAGE_BYTES", SOCKET_MESSAGE_BYTES_DEFAULT,
        "Largest frame a client may send on a WebSocket (only control frames are expected); a bigger one, or any data "
        "message, closes the socket.")
    web_threads: int = setting("WEB_THREADS", WEB_THREADS_DEFAULT,
        "gunicorn threads of the single web process; every open WebSocket holds one, so size it for viewers plus HTTP "
        "requests.")
    web_db_pool_size: int = setting("WEB_DB_POOL_SIZE", WEB_DB_POOL_SIZE_DEFAULT,
        "Postgres connections the web process may open (plus one for its event listener).")
    secret_key: str = setting("SECRET_KEY", "",
        "Signs the session cookie that holds the CSRF token; empty uses a random key generated once and kept in Postgres "
        "(table web_secrets).")
    max_body_bytes: int = setting("MAX_BODY_BYTES", MAX_BODY_BYTES_DEFAULT, "Largest request body; bigger ones get 413.")
    chaos_enabled: bool = setting("CHAOS_ENABLED", True, "Show the Kill button and serve `POST /api/workers/<name>/kill`.")
    rate_window_seconds: float = setting("RATE_WINDOW_SECONDS", RATE_WINDOW_SECONDS_DEFAULT,
        "Length of the rate-limit window (the limits below count per client and window, across all web processes).")
    submits_per_window: int = setting("SUBMITS_PER_WINDOW", SUBMITS_PER_WINDOW_DEFAULT,
        "Runs a client may submit per window; 0 disables the limit.")
    actions_per_window: int = setting("ACTIONS_PER_WINDOW", ACTIONS_PER_WINDOW_DEFAULT,
        "Cancels, redrives and signals a client may request per window; 0 disables the limit.")
    kills_per_window: int = setting("KILLS_PER_WINDOW", KILLS_PER_WINDOW_DEFAULT,
        "Kill-worker requests a client may make per window; 0 disables the limit.")
    client_ip_header: str = setting("CLIENT_IP_HEADER", "",
        "Header carrying the visitor's address when behind a proxy (e.g. Fly-Client-IP); empty uses the peer address. Only "
        "set it behind a proxy that overwrites it.")
    allowed_origins: str = setting("ALLOWED_ORIGINS", "",
        "Extra origins (comma-separated, e.g. https://demo.example) allowed to open WebSockets and call the API from a "
        "browser; the page's own origin always is.")
    secure_cookies: bool = setting("SECURE_COOKIES", False, "Mark the session cookie Secure (set it when served over HTTPS).")
    live_gap_seconds: float = setting("LIVE_GAP_SECONDS", LIVE_GAP_SECONDS_DEFAULT,
        "How long the live stream holds events behind a missing audit id (a transaction that has not committed yet) before "
        "treating the id as rolled back.")
    supervisor_socket: str = setting("SUPERVISOR_SOCKET", "",
        "supervisord's unix control socket; when set, the Kill button signals workers through it.")
    live_poll_seconds: float = setting("LIVE_POLL_SECONDS", LIVE_POLL_SECONDS_DEFAULT,
        "Longest the live stream waits for a NOTIFY before it reads the audit log anyway.")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> WebSettings:
        """Build settings from the environment; a malformed value is a clear error."""
        return read_env(cls, environ, overrides)


def documented_web_settings() -> list[tuple[str, object, str]]:
    """(environment name, default, help) of every web setting, for docs."""
    return describe(WebSettings)
