"""`python -m engine COMMAND`: submit, status, events, cancel, redrive, verify, watch.

Output is JSON (or JSON lines) in the shapes of the HTTP API; errors print a message on stderr and
exit non-zero (1 for a refused request, 2 for bad usage or an unreachable database).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from engine import store
from engine.config import Settings
from engine.errors import EngineError, StoreUnavailable
from engine.eventorder import RunFollower
from engine.model import Event, RunStatus
from engine.submit import submit_run
from engine.verify import verify_all, verify_run
from engine.wire import event_to_api, run_to_api


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def cmd_submit(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineError(f"{args.file}: not valid JSON ({exc})") from None
    run_id, created = submit_run(conn, body, settings)
    print(run_id)
    if not created:
        print(f"run {run_id} already exists for this idempotency key", file=sys.stderr)
    return 0


def cmd_status(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    _print_json(run_to_api(store.run_get(conn, args.run_id)))
    return 0


def cmd_events(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    store.run_get(conn, args.run_id)  # a clear "no run" instead of an empty list
    for event in store.events_after(conn, args.run_id, args.after, limit=1_000_000):
        _print_json(event_to_api(event))
    return 0


def cmd_cancel(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    cancelled = store.run_cancel(conn, args.run_id, by="cli")
    print(f"run {args.run_id} cancelled ({cancelled} step(s) cancelled)")
    return 0


def cmd_redrive(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    run_id = store.step_redrive(conn, args.step_id, by="cli")
    print(f"step {args.step_id} redriven; run {run_id} is running")
    return 0


def cmd_verify(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    problems = {args.run_id: verify_run(conn, args.run_id)} if args.run_id else verify_all(conn)
    problems = {run: found for run, found in problems.items() if found}
    for run, found in problems.items():
        for problem in found:
            print(f"{run}: {problem}")
    if problems:
        return 1
    print("ok: every invariant holds" + (f" for run {args.run_id}" if args.run_id else " for every run"))
    return 0


def format_event(event: Event) -> str:
    parts = [event.ts.strftime("%H:%M:%S.%f")[:-3], f"#{event.id}", event.type]
    if event.step:
        parts.append(event.step)
    if event.attempt:
        parts.append(f"attempt={event.attempt}")
    if event.worker:
        parts.append(f"worker={event.worker}")
    if event.detail:
        parts.append(json.dumps(event.detail, sort_keys=True))
    return " ".join(parts)


def cmd_watch(conn: psycopg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    """Print the run's events as they happen; exit when the run is terminal. LISTEN wakes it up,
    and it polls anyway, so a lost notification costs latency only."""
    store.run_get(conn, args.run_id)
    store.listen(conn, store.EVENTS_CHANNEL)
    watch = RunFollower(args.run_id, after=args.after)
    events = watch.start(conn)
    while True:
        for event in events:
            print(format_event(event), flush=True)
        status = store.run_get(conn, args.run_id).status
        if status.terminal:
            for event in watch.finish(conn):
                print(format_event(event), flush=True)
            print(f"run {args.run_id} {status}", flush=True)
            return 0 if status == RunStatus.COMPLETED else 3
        store.wait_for_notify(conn, 1.0)
        events = watch.poll(conn)


COMMANDS = {"submit": cmd_submit, "status": cmd_status, "events": cmd_events, "cancel": cmd_cancel,
            "redrive": cmd_redrive, "verify": cmd_verify, "watch": cmd_watch}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("submit", help="submit a run from a JSON file (- for stdin); prints its id").add_argument("file")
    sub.add_parser("status", help="a run as JSON (the shape of GET /api/runs/<id>)").add_argument("run_id")
    events = sub.add_parser("events", help="a run's events as JSON lines")
    events.add_argument("run_id")
    events.add_argument("--after", type=int, default=0, help="only events with a larger id")
    sub.add_parser("cancel", help="cancel a running run").add_argument("run_id")
    sub.add_parser("redrive", help="give a dead-lettered step new attempts").add_argument("step_id", type=int)
    sub.add_parser("verify", help="check the audit-log invariants (all runs, or one)").add_argument(
        "run_id", nargs="?")
    watch = sub.add_parser("watch", help="print a run's events live until it is terminal (exit 0 if completed)")
    watch.add_argument("run_id")
    watch.add_argument("--after", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        with store.connect(settings.database_url, application_name=f"engine-{args.command}") as conn:
            return COMMANDS[args.command](conn, settings, args)
    except StoreUnavailable as exc:
        print(f"error: database unavailable: {str(exc.__cause__ or exc).strip()}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: database unavailable: {str(exc).strip()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
