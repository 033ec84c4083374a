"""``reconciler journal``: read what plan and apply runs did."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import ConfigError

EXAMPLE = """example:
  reconciler journal --since 2026-01-31 --env research-toolbox
  reconciler journal --run 42 --format json
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "journal",
        help="read the journal of plan and apply runs",
        description="List journalled runs and their steps (intent, outcome, error), newest run first. The "
        "journal is opened read-only: this works on a journal this user cannot write.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", type=int, metavar="ID", help="only this run")
    p.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (ISO 8601)")
    p.add_argument("--env", metavar="NAME", help="only steps on this environment")
    p.add_argument("--server", metavar="NAME", help="only steps on this server")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--journal", metavar="PATH", help="journal file (default $RECONCILER_JOURNAL or .reconciler/journal.db)"
    )
    p.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    p.set_defaults(handler=run)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--since {text!r} is not an ISO date or time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reconciler.app.journal_read import journal_entries
    from reconciler.settings import from_environ

    path = args.journal or from_environ().journal_path
    if not Path(path).exists():
        print(f"no journal at {path} yet", file=sys.stderr)
        return 0
    out = journal_entries(
        path, since=_since(args.since), run_id=args.run, limit=args.limit, environment=args.env, server=args.server
    )
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    for item in out:
        _print_run(item)
    return 0


def _print_run(r: dict[str, Any]) -> None:
    """One run and its steps. Names, reasons and agents' errors are shown with control characters escaped: a
    journalled name holding ESC or CR/LF must not recolour the terminal or forge a line."""
    from reconciler.presentation.escape import printable

    head = f"run {r['id']} {r['kind']} {r['started']} -> {r['outcome'] or 'running'}"
    commit = r["git_commit"] or "-"
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    head += f"  digest={(r['manifest_digest'] or '-')[:19]} commit={short}"
    if r["note"]:
        head += f"  ({r['note']})"
    print(printable(head))
    for s in r["steps"]:
        where = f"{s['environment']}/{s['server']}"
        line = f"  {s['outcome'] or 'pending':<11} {s['action']:<11} {where}: {s['reason']}"
        if s["error"]:
            line += f"  error: {s['error']}"
        print(printable(line))
