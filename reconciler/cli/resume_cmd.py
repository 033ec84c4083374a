"""``reconciler resume ENV``: lift a suspension; the next cycle reconciles the environment again."""

from __future__ import annotations

import argparse
from typing import Any

EXAMPLE = """example:
  reconciler resume research-toolbox
"""


def register(subparsers: Any) -> None:
    from reconciler.cli.suspend_cmd import add_common

    p = subparsers.add_parser(
        "resume",
        help="let the daemon and apply change a suspended environment again",
        description="Lift an environment's suspension (`reconciler suspend`): the next daemon cycle or `apply` "
        "reconciles it. Journalled with who. An environment that is not suspended is left as it is.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("environment", metavar="ENV", help="the environment's name (or id) in the database")
    add_common(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.app.suspend import resume
    from reconciler.cli.plan_cmd import settings_from
    from reconciler.presentation.escape import printable

    done = resume(settings_from(args), args.environment, by=args.by)
    if done.suspension is None:
        print(printable(f"{done.environment} was not suspended; nothing changed"))
        return 0
    print(printable(f"{done.environment} resumed (it was {done.suspension.describe()})"))
    print(printable(f"The next daemon cycle or apply reconciles {done.environment}."))
    return 0
