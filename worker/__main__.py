"""`python -m worker [--name NAME] [--concurrency N]`: one worker process."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from engine.config import Settings
from worker.worker import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--name", default=None, help="worker name shown in events (default $WORKER_NAME)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="step slots (default $WORKER_CONCURRENCY)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.name or settings.worker_name or f"worker-{socket.gethostname()}-{os.getpid()}"
    logging.basicConfig(level=settings.log_level.upper(),
                        format=f"%(asctime)s {name} %(levelname)s %(message)s", stream=sys.stderr)
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
