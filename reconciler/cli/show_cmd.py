"""``reconciler show plan.json``: render a saved plan again, without observing anything."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.cli.plan_output import add_split

EXAMPLE = """example:
  reconciler plan manifests/ --out plan.json --format github
  reconciler show plan.json --format markdown > comment.md

The output is the one `plan` printed when it made the file, in every format.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "show",
        help="render a saved plan (plan --out) without observing anything",
        description="Print a saved plan in any format, as the plan that made it did. Reads no database and "
        "calls no toolbox.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plan_file", metavar="PLAN", help="a plan saved with `plan --out` (or `plan --format json`)")
    p.add_argument("--format", choices=("text", "json", "markdown", "github"), default="text")
    p.add_argument("--no-color", action="store_true", help="no colour even on a terminal")
    add_split(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.plan_cmd import use_color
    from reconciler.cli.plan_output import write_extras
    from reconciler.cli.saved_file import read_plan_file
    from reconciler.core.verdict import verdict_of
    from reconciler.presentation.render import render_plan

    saved = read_plan_file(args.plan_file)
    color = use_color(sys.stdout, args.no_color)
    sys.stdout.write(render_plan(saved.plan, args.format, color=color, scope=saved.scope))
    write_extras(args, saved.plan, verdict_of(saved.plan, addresses=saved.scope.addresses), saved.scope)
    return 0
