"""The web app's own settings, read from the environment beside the engine's `Settings`.

Same pattern as `engine.config`: one documented list of (name, default, help), so the README and
the tests share it. `create_app(config)` takes overrides by field name, for the tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import describe, read_env

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

    port: int = field(default=PORT_DEFAULT, metadata={
        "env": "PORT", "help": "TCP port `python -m app` listens on."})
    bind_address: str = field(default=BIND_ADDRESS_DEFAULT, metadata={
        "env": "BIND_ADDRESS", "help": "Address `python -m app` listens on: all interfaces by default (the "
        "container needs that); 127.0.0.1 keeps it to this machine."})
    request_read_seconds: float = field(default=REQUEST_READ_SECONDS_DEFAULT, metadata={
        "env": "REQUEST_READ_SECONDS", "help": "Longest a client may take to send a request's headers and "
        "body, in total; a slower one (slowloris) is disconnected, so it cannot hold a thread."})
    max_connections_per_address: int = field(default=MAX_CONNECTIONS_PER_ADDRESS_DEFAULT, metadata={
        "env": "MAX_CONNECTIONS_PER_ADDRESS", "help": "Open TCP connections allowed per peer address; "
        "more are closed at once. Applies only when CLIENT_IP_HEADER is empty (behind a proxy every "
        "peer is the proxy); 0 disables it."})
    max_sockets: int = field(default=MAX_SOCKETS_DEFAULT, metadata={
        "env": "MAX_SOCKETS", "help": "Open WebSockets allowed at once; more are closed with code 1013 "
        "and a reason. Keep it well below WEB_THREADS: the difference is what pages, the API and "
        "/healthz always have."})
    max_sockets_per_client: int = field(default=MAX_SOCKETS_PER_CLIENT_DEFAULT, metadata={
        "env": "MAX_SOCKETS_PER_CLIENT", "help": "Open WebSockets allowed per client; more are closed with "
        "code 1013 and a reason; 0 disables the cap."})
    socket_message_bytes: int = field(default=SOCKET_MESSAGE_BYTES_DEFAULT, metadata={
        "env": "SOCKET_MESSAGE_BYTES", "help": "Largest frame a client may send on a WebSocket (only "
        "control frames are expected); a bigger one, or any data message, closes the socket."})
    web_threads: int = field(default=WEB_THREADS_DEFAULT, metadata={
        "env": "WEB_THREADS", "help": "gunicorn threads of the single web process; every open "
        "WebSocket holds one, so size it for viewers plus HTTP requests."})
    web_db_pool_size: int = field(default=WEB_DB_POOL_SIZE_DEFAULT, metadata={
        "env": "WEB_DB_POOL_SIZE", "help": "Postgres connections the web process may open (plus one "
        "for its event listener)."})
    secret_key: str = field(default="", metadata={
        "env": "SECRET_KEY", "help": "Signs the session cookie that holds the CSRF token; empty uses "
        "a random key generated once and kept in Postgres (table web_secrets)."})
    max_body_bytes: int = field(default=MAX_BODY_BYTES_DEFAULT, metadata={
        "env": "MAX_BODY_BYTES", "help": "Largest request body; bigger ones get 413."})
    chaos_enabled: bool = field(default=True, metadata={
        "env": "CHAOS_ENABLED", "help": "Show the Kill button and serve `POST /api/workers/<name>/kill`."})
    rate_window_seconds: float = field(default=RATE_WINDOW_SECONDS_DEFAULT, metadata={
        "env": "RATE_WINDOW_SECONDS", "help": "Length of the rate-limit window (the limits below count "
        "per client and window, across all web processes)."})
    submits_per_window: int = field(default=SUBMITS_PER_WINDOW_DEFAULT, metadata={
        "env": "SUBMITS_PER_WINDOW", "help": "Runs a client may submit per window; 0 disables the limit."})
    actions_per_window: int = field(default=ACTIONS_PER_WINDOW_DEFAULT, metadata={
        "env": "ACTIONS_PER_WINDOW", "help": "Cancels, redrives and signals a client may request "
        "per window; 0 disables the limit."})
    kills_per_window: int = field(default=KILLS_PER_WINDOW_DEFAULT, metadata={
        "env": "KILLS_PER_WINDOW", "help": "Kill-worker requests a client may make per window; 0 "
        "disables the limit."})
    client_ip_header: str = field(default="", metadata={
        "env": "CLIENT_IP_HEADER", "help": "Header carrying the visitor's address when behind a proxy "
        "(e.g. Fly-Client-IP); empty uses the peer address. Only set it behind a proxy that overwrites it."})
    allowed_origins: str = field(default="", metadata={
        "env": "ALLOWED_ORIGINS", "help": "Extra origins (comma-separated, e.g. https://demo.example) "
        "allowed to open WebSockets and call the API from a browser; the page's own origin always is."})
    secure_cookies: bool = field(default=False, metadata={
        "env": "SECURE_COOKIES", "help": "Mark the session cookie Secure (set it when served over HTTPS)."})
    live_gap_seconds: float = field(default=LIVE_GAP_SECONDS_DEFAULT, metadata={
        "env": "LIVE_GAP_SECONDS", "help": "How long the live stream holds events behind a missing "
        "audit id (a transaction that has not committed yet) before treating the id as rolled back."})
    supervisor_socket: str = field(default="", metadata={
        "env": "SUPERVISOR_SOCKET", "help": "supervisord's unix control socket; when set, the Kill "
        "button signals workers through it."})
    live_poll_seconds: float = field(default=LIVE_POLL_SECONDS_DEFAULT, metadata={
        "env": "LIVE_POLL_SECONDS", "help": "Longest the live stream waits for a NOTIFY before it reads "
        "the audit log anyway."})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> WebSettings:
        """Build settings from the environment; a malformed value is a clear error."""
        return read_env(cls, environ, overrides)


def documented_web_settings() -> list[tuple[str, object, str]]:
    """(environment name, default, help) of every web setting, for docs."""
    return describe(WebSettings)
