"""``reconciler plan``: observe and diff, change nothing, journal the plan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLE = """example:
  reconciler plan manifests/ --detailed-exitcode
  reconciler plan manifests/ --env research-toolbox --format markdown
  reconciler plan manifests/ --out plan.json && reconciler apply plan.json

exit codes: 0 no changes, 1 error or incomplete; with --detailed-exitcode 2 changes, 3 changes including a
destructive step. A plan is incomplete when a toolbox in scope was not observed (unreachable, token missing or
rejected, Docker down on the host, not in the database), a safety rule refused part of it, or a declared
server cannot be reconciled; --allow-incomplete then exits as if the rest were the whole plan.
"""


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", action="append", metavar="NAME", help="only this environment (repeatable)")
    p.add_argument("--database", metavar="URL", help="database URL (default $RECONCILER_DATABASE_URL)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default $RECONCILER_JOURNAL)")


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
    p.add_argument("--out", metavar="FILE", help="also save the plan (JSON, with its basis) for `apply FILE`")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 on changes, 3 on destructive ones")
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="do not exit 1 when a toolbox in scope was not observed, was refused, or has a server that cannot "
        "be reconciled (the plan still names each one)",
    )
    add_common(p)
    p.set_defaults(handler=run)


def settings_from(args: argparse.Namespace) -> Any:
    from reconciler.settings import from_environ

    return from_environ().with_overrides(
        database_url=getattr(args, "database", None), journal_path=getattr(args, "journal", None)
    )


def render(plan: Any, fmt: str, color: bool, observed: Any = None) -> str:
    """The plan in ``fmt``; ``observed`` names each uncovered toolbox's address in the incomplete verdict."""
    from reconciler.core.verdict import verdict_of
    from reconciler.presentation.render import render_plan

    return render_plan(plan, fmt, color=color, verdict=verdict_of(plan, observed))


def saved_plan_dict(plan: Any, basis: Any, paths: list[str], verdict: Any = None) -> dict[str, Any]:
    from reconciler.presentation.plan_json import plan_to_dict

    basis_data = {**basis.to_dict(), "paths": [str(Path(p).resolve()) for p in paths]}
    return dict(plan_to_dict(plan, basis=basis_data, verdict=verdict))


def run(args: argparse.Namespace) -> int:
    from reconciler.app.reconcile import reconcile_once
    from reconciler.core.plan import Plan
    from reconciler.errors import ReconcilerError
    from reconciler.presentation.escape import printable
    from reconciler.presentation.exit_codes import plan_exit_code

    try:
        settings = settings_from(args)
        result = reconcile_once(settings, args.paths, apply=False, env_filter=args.env, want_basis=bool(args.out))
    except ReconcilerError as exc:
        if args.format != "text":  # a CI comment or annotation shows why, instead of nothing
            from reconciler.presentation.failure import render_failure

            sys.stdout.write(render_failure(exc, args.format))
        raise  # and the one-line error on stderr, exit 1
    the_plan = result.plan or Plan(steps=())
    sys.stdout.write(render(the_plan, args.format, use_color(sys.stdout), result.observed))
    if args.out and result.basis is not None:
        data = saved_plan_dict(the_plan, result.basis, args.paths, result.verdict)
        Path(args.out).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    complete = result.verdict.complete
    if not complete and args.format != "text":  # the text output names them first already
        for gap in result.verdict.gaps:
            print(printable(f"incomplete: {gap}"), file=sys.stderr)
    return plan_exit_code(
        the_plan, args.detailed_exitcode, complete=complete, allow_incomplete=args.allow_incomplete
    )


def use_color(stream: Any) -> bool:
    import os

    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
