"""``reconciler status``: per environment and server, what is recorded, what runs, and the last step."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXAMPLE = """example:
  reconciler status                       (desired = the state recorded at the last apply)
  reconciler status manifests/            (desired = the manifests: what git says)
  reconciler status manifests/ --env research-toolbox --format json
  reconciler status --format json --database postgresql://reconciler@db/agentopia

With manifest paths, each server shows what differs: not-declared, not-recorded, not-deployed, image, spec,
spec? (a secretFromEnv variable is not set here, so the spec is not compared), state, applied-state (the last
apply recorded another desired state), status, unobserved (its toolbox was not listed), unknown-environment;
and the step a plan would give it.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="show recorded and live state per server",
        description="Per environment and server: desired state, recorded status, live container state and "
        "the last journalled step. Without paths the desired state is the one recorded at the last apply; with "
        "manifest paths it is the manifests', compared with the rows and the live listings.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="manifest files or directories to compare with")
    p.add_argument("--env", action="append", metavar="NAME", help="with paths: only this environment (repeatable)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--database", metavar="URL", help="database URL (default $RECONCILER_DATABASE_URL)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default $RECONCILER_JOURNAL)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.app.reconcile import status_rows
    from reconciler.cli.plan_cmd import settings_from
    from reconciler.presentation.escape import printable

    if args.paths:
        return _against(args)
    if args.env:
        from reconciler.errors import ConfigError

        raise ConfigError("--env needs manifest paths: reconciler status manifests/ --env NAME")
    rows = status_rows(settings_from(args))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print("desired = the state recorded at the last apply, not what git says (reconciler status PATH... compares "
          "with the manifests)")  # fmt: skip
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


def _against(args: argparse.Namespace) -> int:
    from reconciler.app.status_against import status_against
    from reconciler.cli.plan_cmd import settings_from
    from reconciler.presentation.escape import printable

    rows = status_against(settings_from(args), args.paths, env_filter=args.env, journal_path=args.journal)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(
        printable(f"desired = the manifests ({', '.join(args.paths)}); recorded = the database; live = the agents")
    )
    for r in rows:
        mark = "" if r["managed"] or not r["recorded"] else " (unmanaged)"
        mark += "" if r["declared"] else " (not declared)"
        mark += " (suspended)" if r.get("suspended") else ""
        differs = ",".join(r["differs"]) or "-"
        lines = [
            f"{r['environment']}/{r['server']}{mark}: desired={r['desired_state'] or '-'} "
            f"recorded={r['recorded'] or '-'} live={r['live']}{_health(r)} differs={differs}"
        ]
        if "image" in r["differs"]:
            lines.append(
                f"    image: desired={r['desired_image'] or '-'} recorded={r['recorded_image'] or '-'} "
                f"live={r['live_image'] or '-'}"
            )
        if r["planned"]:
            lines.append(f"    plan: {r['planned']}")
        lines += [f"    ! {n}" for n in r["notices"]]
        for line in lines:
            print(printable(line))
    differing = sum(1 for r in rows if r["differs"])
    # Matching git is not answering, nor offering what git pins: such servers are never summed up as in sync.
    failing = [f"{r['environment']}/{r['server']}" for r in rows if (r.get("probe") or {}).get("ok") is False]
    drift = [
        f"{r['environment']}/{r['server']}"
        for r in rows
        if any(n.startswith("offer-drift:") for n in r["notices"])
    ]
    but = [f"{len(failing)} failed the last readiness probe ({', '.join(failing)})"] if failing else []
    but += [f"{len(drift)} offer less than declared ({', '.join(drift)})"] if drift else []
    if not rows:
        print("no servers declared, recorded or running in the environments of the manifests")
    elif differing:
        print(
            printable(
                f"{differing} of {len(rows)} servers differ from the manifests{''.join('; ' + b for b in but)}"
            )
        )
    else:
        # Only declared servers can match the manifests: a container or row they do not name is counted apart.
        declared = sum(1 for r in rows if r["declared"])
        others = [f"{r['environment']}/{r['server']}" for r in rows if not r["declared"]]
        aside = (
            f" {len(others)} other {'server is' if len(others) == 1 else 'servers are'} recorded or running but "
            f"not declared, and left alone ({', '.join(others)})."
            if others
            else ""
        )
        if but:
            said = f"All {declared} declared servers are deployed as the manifests say, but {'; '.join(but)}."
        else:
            said = f"All {declared} declared servers match the manifests (declared, recorded and live)."
        print(printable(said + aside))
    return 0


def _health(row: dict[str, Any]) -> str:
    """`` health=unhealthy (error)`` from the last recorded readiness probe; nothing when never probed."""
    probe = row.get("probe")
    if not row.get("health") or not probe:
        return ""
    if row.get("live") != "running":  # the last probe says nothing about a container not seen running
        last = "passed" if probe.get("ok") else "failed"
        return f" health={row['health']} (last probe {last} at {probe.get('at')})"
    error = f" ({probe['error']})" if probe.get("error") else ""
    tools = f" tools={','.join(probe['tools'])}" if probe.get("ok") and probe.get("tools") else ""
    return f" health={row['health']}{error}{tools}"
