"""The ``reconciler`` command: parsing and exit codes only. Each command lives in its own module here,
which exposes ``register(subparsers)``; the work itself is one call into the library."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reconciler import __version__
from reconciler.errors import ReconcilerError
from reconciler.logs import setup_logging

# Order here is the order in `reconciler --help`.
COMMAND_MODULES = ("validate", "plan", "apply", "status", "run", "journal", "db", "sim", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Keep the MCP servers on Agentopia toolboxes as the manifests say.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-reconciler {__version__}")
    _add_global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"reconciler.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"reconciler.cli.{name}_cmd":
                raise
            continue
        module.register(sub)
    for command in sub.choices.values():
        # Accepted after the command too (`reconciler apply m/ --log-format json`); SUPPRESS keeps a value
        # given before the command from being reset by the subparser's default.
        _add_global_options(command, defaults=False)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text" if defaults else argparse.SUPPRESS,
        help="log and progress lines as text or JSON lines",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if defaults else argparse.SUPPRESS,
        help="more log output (-vv debug)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(fmt=args.log_format, verbosity=args.verbose)
    try:
        code: int = args.handler(args)
    except ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
