"""``reconciler plan``: observe and diff, change nothing, journal the plan."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.cli.plan_output import add_split, write_extras

EXAMPLE = """example:
  reconciler plan manifests/ --detailed-exitcode
  reconciler plan manifests/ --env research-toolbox --format markdown
  reconciler plan manifests/ --env prod-toolbox --out plan.json && reconciler apply plan.json
  reconciler plan manifests/ --server github-mcp --server slack-mcp
  reconciler plan manifests/ --no-refresh --format markdown   (no DTMA call: the database rows only)

exit codes: 0 no changes, 1 error or incomplete; with --detailed-exitcode 2 changes, 3 changes including a
destructive step. A plan is incomplete when a toolbox in scope was not observed (unreachable, token missing or
rejected, Docker down on the host, not in the database), a safety rule refused part of it, or a declared
server cannot be reconciled; --allow-incomplete then exits as if the rest were the whole plan.
"""


def add_common(p: argparse.ArgumentParser, *, servers: bool = False) -> None:
    p.add_argument("--env", action="append", metavar="NAME", help="only this environment (repeatable)")
    if servers:
        add_server(p)
    p.add_argument("--database", metavar="URL", help="database URL (default $RECONCILER_DATABASE_URL)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default $RECONCILER_JOURNAL)")
    p.add_argument(
        "--no-rollout",
        action="store_true",
        help="no waves: replace a server on every toolbox at once (default: a first wave, then the rest, "
        "halting on a failure; also RECONCILER_ROLLOUT=off)",
    )


def add_adopt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adopt",
        action="store_true",
        help="take running containers with a declared server's name and image and no managed row under "
        "management in every environment, as if each said policy.adopt: true (no container is recreated)",
    )


def add_server(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        action="append",
        metavar="NAME",
        help="only this server's steps (repeatable): a partial plan, like terraform's -target",
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="show what apply would change",
        description="Observe the database and every toolbox, diff with the manifests, and print the plan. "
        "Nothing is changed.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    p.add_argument("--format", choices=("text", "json", "markdown", "github"), default="text")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="also save the plan for `apply FILE` (its scope, basis and desired state: no manifest needed then)",
    )
    p.add_argument(
        "--no-refresh",
        action="store_true",
        help="do not read the toolboxes (no DTMA call): diff with the database rows only; cannot be saved",
    )
    p.add_argument(
        "--no-color", action="store_true", help="no colour even on a terminal (also NO_COLOR, TERM=dumb)"
    )
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 on changes, 3 on destructive ones")
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="do not exit 1 when a toolbox in scope was not observed, was refused, or has a server that cannot "
        "be reconciled (the plan still names each one)",
    )
    add_common(p, servers=True)
    add_adopt(p)
    add_split(p)
    p.set_defaults(handler=run)


def settings_from(args: argparse.Namespace) -> Any:
    from reconciler.settings import from_environ

    return from_environ().with_overrides(
        database_url=getattr(args, "database", None),
        journal_path=getattr(args, "journal", None),
        rollout=False if getattr(args, "no_rollout", False) else None,
    )


def render(plan: Any, fmt: str, color: bool, observed: Any = None, scope: Any = None) -> str:
    """The plan in ``fmt``; ``observed`` names each uncovered toolbox's address in the incomplete verdict."""
    from reconciler.core.verdict import verdict_of
    from reconciler.presentation.render import render_plan

    return render_plan(plan, fmt, color=color, verdict=verdict_of(plan, observed), scope=scope)


def plan_scope(args: argparse.Namespace, plan: Any, observed: Any, *, refreshed: bool = True) -> Any:
    """What this plan speaks for, with the addresses of the toolboxes its notices name (for ``show``)."""
    from reconciler.core.scope import PlanScope, addresses_of

    return PlanScope(
        environments=tuple(args.env) if args.env else None,
        servers=tuple(args.server) if args.server else None,
        refreshed=refreshed,
        addresses=addresses_of(observed, [n.environment_id for n in plan.notices]),
    )


def run(args: argparse.Namespace) -> int:
    from reconciler.app.reconcile import reconcile_once
    from reconciler.core.plan import Plan
    from reconciler.core.verdict import verdict_of
    from reconciler.errors import ConfigError, ReconcilerError
    from reconciler.presentation.escape import printable
    from reconciler.presentation.exit_codes import plan_exit_code

    if args.out and args.no_refresh:
        raise ConfigError("--out: a plan made with --no-refresh did not read the live state and cannot be applied")
    try:
        settings = settings_from(args)
        result = reconcile_once(
            settings,
            args.paths,
            apply=False,
            env_filter=args.env,
            servers=args.server,
            refresh=not args.no_refresh,
            want_basis=bool(args.out),
            adopt=args.adopt,
        )
    except ReconcilerError as exc:
        if args.format != "text":  # a CI comment or annotation shows why, instead of nothing
            from reconciler.presentation.failure import render_failure

            sys.stdout.write(render_failure(exc, args.format))
        raise  # and the one-line error on stderr, exit 1
    the_plan = result.plan or Plan(steps=())
    scope = plan_scope(args, the_plan, result.observed, refreshed=not args.no_refresh)
    sys.stdout.write(render(the_plan, args.format, use_color(sys.stdout, args.no_color), result.observed, scope))
    write_extras(args, the_plan, verdict_of(the_plan, result.observed), scope)
    if args.out and result.basis is not None:
        from reconciler.cli.saved_file import write_plan_file
        from reconciler.presentation.plan_json import plan_to_dict

        data = plan_to_dict(
            the_plan, basis=result.basis.to_dict(), scope=scope, desired=result.desired, verdict=result.verdict
        )
        write_plan_file(args.out, data)
    complete = result.verdict.complete
    if not complete and args.format != "text":  # the text output names them first already
        for gap in result.verdict.gaps:
            print(printable(f"incomplete: {gap}"), file=sys.stderr)
    return plan_exit_code(
        the_plan, args.detailed_exitcode, complete=complete, allow_incomplete=args.allow_incomplete
    )


def use_color(stream: Any, no_color: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color, NO_COLOR set and non-empty, or TERM=dumb."""
    import os

    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())
