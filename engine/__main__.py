"""`python -m engine COMMAND`: submit, status, events, cancel, redrive, verify, watch, signal, rerun, tools.

Output is JSON (or JSON lines) in the shapes of the HTTP API; errors print a message on stderr and
exit non-zero (1 for a refused request, 2 for bad usage or an unreachable database). Every command
goes through `engine.client.Client`, the same client `durable_agent` gives Python code.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

import psycopg

from engine.client import Client
from engine.config import Settings
from engine.errors import EngineError, StoreUnavailable
from engine.model import Event, RunStatus
from engine.verify import verify_all, verify_run
from engine.wire import event_to_api, run_to_api, signal_to_api


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineError(f"{args.file}: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise EngineError(f"{args.file}: the run must be a JSON object")
    run_id, created = client.submit_created(body)
    print(run_id)
    if not created:
        print(f"run {run_id} already exists for this idempotency key", file=sys.stderr)
    return 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    _print_json(run_to_api(client.get(args.run_id)))
    return 0


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    for event in client.events(args.run_id, args.after):
        _print_json(event_to_api(event))
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    cancelled = client.cancel(args.run_id)
    print(f"run {args.run_id} cancelled ({cancelled} step(s) cancelled)")
    return 0


def cmd_redrive(client: Client, args: argparse.Namespace) -> int:
    run_id = client.redrive(args.step_id)
    print(f"step {args.step_id} redriven; run {run_id} is running")
    return 0


def cmd_tools(client: Client, args: argparse.Namespace) -> int:
    """The tools submission accepts, one per line; with --wait, first wait until live workers offer them."""
    if args.wait:
        try:
            client.wait_for_tools(args.wait, timeout=args.timeout)
        except TimeoutError as exc:
            raise EngineError(str(exc)) from None
    live = set(client.tools(live=True))
    for name in client.tools():
        print(name if name in live else f"{name} (no live worker)")
    return 0


def cmd_verify(client: Client, args: argparse.Namespace) -> int:
    conn = client.conn
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


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    """Print the run's events as they happen; exit when the run is terminal (Client.watch: LISTEN
    wakes it up, and it polls anyway, so a lost notification costs latency only)."""
    for event in client.watch(args.run_id, args.after):
        print(format_event(event), flush=True)
    status = client.get(args.run_id).status
    print(f"run {args.run_id} {status}", flush=True)
    return 0 if status == RunStatus.COMPLETED else 3


def _cli_sender() -> str:
    """Who signals from the CLI, for the audit trail: the local user, as far as it is known."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def cmd_signal(client: Client, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise EngineError(f"--data is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise EngineError("--data must be a JSON object")
    outcome = client.signal(args.run_id, args.step_name, payload, sender=_cli_sender())
    _print_json(signal_to_api(args.run_id, args.step_name, outcome))
    return 0


def cmd_rerun(client: Client, args: argparse.Namespace) -> int:
    try:
        override = json.loads(args.input) if args.input else None
    except json.JSONDecodeError as exc:
        raise EngineError(f"--input is not valid JSON ({exc})") from None
    print(client.rerun(args.run_id, args.from_step, override))
    return 0


COMMANDS = {"signal": cmd_signal, "rerun": cmd_rerun,
            "submit": cmd_submit, "status": cmd_status, "events": cmd_events, "cancel": cmd_cancel,
            "redrive": cmd_redrive, "verify": cmd_verify, "watch": cmd_watch, "tools": cmd_tools}


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
    signal = sub.add_parser("signal", help="resolve a waiting wait.<label> step; the JSON becomes its output")
    signal.add_argument("run_id")
    signal.add_argument("step_name")
    signal.add_argument("--data", default="{}", help='JSON object, e.g. \'{"approved": true}\'')
    rerun = sub.add_parser("rerun", help="re-run a finished run from a step; prints the new run's id")
    rerun.add_argument("run_id")
    rerun.add_argument("--from", dest="from_step", required=True, help="the step to run afresh (and all after it)")
    rerun.add_argument("--input", help="JSON object of input fields to override on that step")
    watch = sub.add_parser("watch", help="print a run's events live until it is terminal (exit 0 if completed)")
    watch.add_argument("run_id")
    watch.add_argument("--after", type=int, default=0)
    tools = sub.add_parser("tools", help="the tools runs may use (built-ins and those workers offered)")
    tools.add_argument("--wait", nargs="+", metavar="TOOL", help="first wait until live workers offer these")
    tools.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        with Client(settings=settings, actor="cli") as client:
            return COMMANDS[args.command](client, args)
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
