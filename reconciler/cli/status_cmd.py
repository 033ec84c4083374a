"""``reconciler status``: per environment and server, what is recorded, what runs, and the last step."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXAMPLE = """example:
  reconciler status
  reconciler status --format json --database postgresql://reconciler@db/agentopia
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="show recorded and live state per server",
        description="Per environment and server: desired state, recorded status, live container state and "
        "the last journalled step.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--database", metavar="URL", help="database URL (default $RECONCILER_DATABASE_URL)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default $RECONCILER_JOURNAL)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.app.reconcile import status_rows
    from reconciler.cli.plan_cmd import settings_from
    from reconciler.presentation.escape import printable

    rows = status_rows(settings_from(args))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no servers recorded or running")
    shown: set[str] = set()
    for r in rows:
        held = r.get("suspended")
        if held and r["environment"] not in shown:
            shown.add(r["environment"])
            print(printable(f"{r['environment']}: suspended by {held['by']} at {held['at']}: {held['reason']}"))
    for r in rows:
        mark = "" if r["managed"] else " (unmanaged)"
        mark += " (suspended)" if r.get("suspended") else ""
        # Names and states come from rows and agents: a control character is shown, never obeyed.
        line = (f"{r['environment']}/{r['server']}{mark}: desired={r['desired_state'] or '-'} "
                f"recorded={r['recorded'] or '-'} live={r['live']}{_health(r)} "
                f"last={r['last_step'] or '-'}")  # fmt: skip
        print(printable(line))
    return 0


def _health(row: dict[str, Any]) -> str:
    """`` health=unhealthy (error)`` from the last recorded readiness probe; nothing when never probed."""
    probe = row.get("probe")
    if not row.get("health") or not probe:
        return ""
    error = f" ({probe['error']})" if probe.get("error") else ""
    tools = f" tools={','.join(probe['tools'])}" if probe.get("ok") and probe.get("tools") else ""
    return f" health={row['health']}{error}{tools}"
