"""``reconciler suspend ENV --reason TEXT``: the daemon and ``apply`` leave an environment alone."""

from __future__ import annotations

import argparse
from typing import Any

EXAMPLE = """example:
  reconciler suspend research-toolbox --reason "incident 42: manual fix on the time server"
  reconciler resume research-toolbox
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "suspend",
        help="stop the daemon and apply from changing an environment (during an incident)",
        description="Suspend an environment: every daemon replica and `apply` leave it as it is (its steps are "
        "held back and the run is not `converged`), while `plan` still shows its drift. Stored in the "
        "database, journalled with who and why. `reconciler resume ENV` lifts it.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("environment", metavar="ENV", help="the environment's name (or id) in the database")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (shown by plan, status and the journal)")
    add_common(p)
    p.set_defaults(handler=run)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", metavar="WHO", help="who suspends or resumes (default user@host)")
    p.add_argument("--database", metavar="URL", help="database URL (default $RECONCILER_DATABASE_URL)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default $RECONCILER_JOURNAL)")


def run(args: argparse.Namespace) -> int:
    from reconciler.app.suspend import suspend
    from reconciler.cli.plan_cmd import settings_from
    from reconciler.presentation.escape import printable

    done = suspend(settings_from(args), args.environment, args.reason, by=args.by)
    assert done.suspension is not None
    print(printable(f"{done.environment}: {done.suspension.describe()}"))
    print(
        printable(
            f"The daemon and apply leave {done.environment} alone until `reconciler resume {done.environment}`; "
            "plan still shows its drift."
        )
    )
    return 0
