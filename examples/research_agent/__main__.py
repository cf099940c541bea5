"""`python -m examples.research_agent QUESTION --url URL ... [--docs DIR] [--start-worker]`

Submits the research run to the engine at `$DATABASE_URL`, prints its events live and then the
answer; exits 0 when the run completed. Workers must offer the agent's tools: pass
`--start-worker` to run one for the duration (`python -m worker --tools examples.research_agent.tools`),
or start the appliance with `TOOL_MODULES=examples.research_agent.tools`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from durable_agent import Client, InvalidRun, RunStatus
from examples.research_agent.workflow import research_workflow

ROOT = Path(__file__).resolve().parents[2]
TOOLS_MODULE = "examples.research_agent.tools"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.research_agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--url", action="append", default=[], help="a page to read (repeatable)")
    parser.add_argument("--docs", help="a folder of .txt/.md documents on the workers' machine")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the answer")
    parser.add_argument("--start-worker", action="store_true", help="run a worker with the agent's tools meanwhile")
    args = parser.parse_args(argv)
    if not args.url and not args.docs:
        parser.error("give at least one --url or --docs")
    worker = _start_worker() if args.start_worker else None
    try:
        with Client() as client:
            if worker is not None:
                _wait_for_tools(client, worker)
            try:
                run_id = client.submit(research_workflow(args.question, args.url, args.docs))
            except InvalidRun as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"run {run_id}", flush=True)
            for event in client.watch(run_id):
                where = f" {event.step}" if event.step else ""
                note = f" {event.detail.get('message') or event.detail.get('error') or ''}" if event.detail else ""
                print(f"  {event.type}{where}{note}".rstrip(), flush=True)
            run = client.wait(run_id, timeout=args.timeout)
            answer = next((s for s in run.steps if s.name == "llm_call.answer"), None)
            print(f"\n{run.status}: " + (answer.output["summary"] if answer and answer.output else "no answer"))
            return 0 if run.status == RunStatus.COMPLETED else 3
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


def _start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "worker", "--name", f"research-{os.getpid()}",
                             "--concurrency", "4", "--tools", TOOLS_MODULE], cwd=ROOT)


def _wait_for_tools(client: Client, worker: subprocess.Popen) -> None:
    """Until the worker has registered its tools (so submission knows them); fails if it exited."""
    try:
        client.wait_for_tools(["http_fetch", "doc_search", "rank"], timeout=60)
    except TimeoutError:
        raise SystemExit(f"error: the worker did not offer the agent's tools (exit status {worker.poll()})") from None


if __name__ == "__main__":
    sys.exit(main())
