"""`python -m app`: serve the web app and API with gunicorn on $PORT (default 8080).

One gunicorn worker process with many threads (`gthread`): every open WebSocket holds a thread, and
one process means one live-event listener. gunicorn replaces this process (exec), so a signal sent
to this pid (by supervisord, say) reaches gunicorn's master directly.
"""
from __future__ import annotations

import os
import sys

from app.config import WebSettings
from engine.config import Settings

GRACEFUL_TIMEOUT_SECONDS = 5  # open sockets would hold a graceful stop for ever; clients reconnect


def gunicorn_argv(web: WebSettings, log_level: str = "info") -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gthread", "--workers", "1", "--threads", str(web.web_threads),
        "--bind", f"0.0.0.0:{web.port}", "--no-control-socket",
        "--graceful-timeout", str(GRACEFUL_TIMEOUT_SECONDS),
        "--worker-tmp-dir", "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp",
        "--error-logfile", "-", "--log-level", log_level.lower(),
        "app.wsgi:application",
    ]


def main() -> int:
    try:
        settings = Settings.from_env()
        web = WebSettings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    argv = gunicorn_argv(web, settings.log_level)
    os.execv(argv[0], argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
