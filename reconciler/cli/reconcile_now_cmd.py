"""``reconciler reconcile-now``: send the running daemon SIGHUP (a cycle now, with a git pull under
--git-pull), found by the pid file it keeps beside its journal."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLE = """example:
  reconciler reconcile-now                       # the daemon whose journal is $RECONCILER_JOURNAL
  reconciler reconcile-now --journal /var/lib/reconciler/journal.db
  reconciler reconcile-now --pid-file /run/reconciler/daemon.pid

The daemon writes its pid to daemon.pid beside its journal (or run --pid-file) and holds a lock on it while
it runs; a pid file left by a daemon that stopped is never signalled. Several requests while a cycle runs
make one more cycle. Remote callers use the git webhook (POST /hooks/git) instead.

exit codes: 0 the daemon was signalled; 1 no daemon is running (or it may not be signalled by this user)
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reconcile-now",
        help="ask the running daemon for a cycle now (SIGHUP)",
        description="Ask the daemon running on this host for a cycle now, as a push to the git webhook "
        "would: SIGHUP to the pid it recorded. It returns at once; the cycle is the daemon's.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--journal", metavar="PATH", help="the daemon's journal (default $RECONCILER_JOURNAL)")
    p.add_argument(
        "--pid-file", metavar="PATH", help="the daemon's pid file (default: daemon.pid beside the journal)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.app.hooks import poke_daemon
    from reconciler.cli.plan_cmd import settings_from

    pid = poke_daemon(settings_from(args), args.pid_file)
    print(f"asked the daemon (pid {pid}) to reconcile now", file=sys.stderr)
    return 0
