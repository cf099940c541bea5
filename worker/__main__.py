"""`python -m worker [--name NAME] [--concurrency N] [--tools MODULE,...]`: one worker process.

Users' tool modules (`--tools` and `$TOOL_MODULES`) are imported before the worker connects: one
that fails to import stops the process with exit code 2 and the reason, before it registers."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from engine.config import Settings
from engine.tools.registry import ToolLoadError, load_tool_modules, parse_module_list
from worker.worker import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--name", default=None, help="worker name shown in events (default $WORKER_NAME)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="step slots (default $WORKER_CONCURRENCY)")
    parser.add_argument("--tools", action="append", default=[], metavar="MODULE[,MODULE]",
                        help="import path(s) of tool modules to load, in addition to $TOOL_MODULES")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.name or settings.worker_name or f"worker-{socket.gethostname()}-{os.getpid()}"
    logging.basicConfig(level=settings.log_level.upper(),
                        format=f"%(asctime)s {name} %(levelname)s %(message)s", stream=sys.stderr)
    if os.getcwd() not in sys.path:  # as `python -m` does, so a console script finds ./my_tools.py too
        sys.path.insert(0, os.getcwd())
    try:
        loaded = load_tool_modules(parse_module_list(settings.tool_modules, args.tools))
    except ToolLoadError as exc:
        print(f"error: {exc}\nworker {name} not started", file=sys.stderr)
        return 2
    if loaded:
        logging.getLogger("worker").info("tools loaded: %s", ", ".join(sorted(loaded)))
    worker = Worker(settings, name, args.concurrency)

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("worker").info("signal %d: finishing running steps, then stopping", signum)
        worker.stopping.set()
        worker.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
