"""``reconciler demo``: the simulator, embedded state and reconcile loop on examples/, for a first look."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconciler.errors import ConfigError

EXAMPLE = """example:
  reconciler demo --once                  # one cycle: creates the example servers, prints a summary
  reconciler demo                         # a cycle every 10s until Ctrl-C (exit 0)
  reconciler demo --dir /tmp/demo --interval 5s
  reconciler demo --listen 127.0.0.1:8080 # the status page at a fixed address (default: a free port)
  reconciler journal --journal .reconciler/demo/journal.db

Nothing outside --dir is touched: the simulated toolboxes listen on loopback only and the demo ignores
RECONCILER_DATABASE_URL, RECONCILER_JOURNAL and BACKEND_TO_DTMA_API_KEY. Secrets the examples reference
(CONTEXT7_API_KEY, GITHUB_TOKEN) get random stand-in values when they are not set.
"""


def register(subparsers: Any) -> None:
    from reconciler.app.demo import DEFAULT_DIR

    p = subparsers.add_parser(
        "demo",
        help="try it: simulated toolboxes, embedded state and the reconcile loop on the examples",
        description="Start two simulated toolboxes on loopback, create the embedded SQLite state in --dir "
        "with them registered (recreated on every start; the journal is kept), and reconcile the shipped "
        "examples/ manifests in the foreground, printing each plan and applied step, until Ctrl-C.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--once", action="store_true", help="one cycle, then a summary (exit code as for apply)")
    p.add_argument("--interval", default="10s", metavar="DURATION", help="between cycles (default 10s)")
    p.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR", help=f"state and journal (default {DEFAULT_DIR})")
    p.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="the status page, /healthz, /readyz and /metrics (default 127.0.0.1:0: a free loopback port, "
        "printed at start)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.app.demo import DemoConfig, run_demo
    from reconciler.cli.run_cmd import parse_duration
    from reconciler.presentation.status_site import status_pages

    if args.listen is not None and ":" not in args.listen:
        raise ConfigError(f"--listen {args.listen!r} is not HOST:PORT")

    def echo(line: str) -> None:
        print(line, flush=True)

    config = DemoConfig(
        directory=Path(args.dir), once=args.once, interval=parse_duration(args.interval), listen=args.listen
    )
    return run_demo(config, echo=echo, site=status_pages)
