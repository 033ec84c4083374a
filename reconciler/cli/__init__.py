"""The ``reconciler`` command: parsing and exit codes only. Each command lives in its own module here,
which exposes ``register(subparsers)``; the work itself is one call into the library.

Start-up is paid on every call (a pre-commit hook, a CI step), so only the chosen command's module is
imported: the others appear in ``--help`` as one line each from ``COMMANDS``, and each module imports what
its work needs inside its handler.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from reconciler import __version__

# name -> one-line help, in the order of `reconciler --help`; each module's register() uses the same line.
COMMANDS: dict[str, str] = {
    "validate": "check manifests (schema and semantics), offline",
    "plan": "show what apply would change",
    "apply": "apply the changes a plan shows",
    "show": "render a saved plan (plan --out) without observing anything",
    "status": "show recorded and live state per server",
    "import": "write a manifest for what an environment runs",
    "run": "run the reconciler as a daemon",
    "suspend": "stop the daemon and apply from changing an environment (during an incident)",
    "resume": "let the daemon and apply change a suspended environment again",
    "reconcile-now": "ask the running daemon for a cycle now (SIGHUP)",
    "journal": "read the journal of plan and apply runs",
    "db": "create the schema; register toolboxes in a database the reconciler owns",
    "sim": "start the DTMA simulator (loopback only)",
    "demo": "try it: simulated toolboxes, embedded state and the reconcile loop on the examples",
    "schema": "print the JSON Schema of manifests or of plans",
    "completion": "print a bash or zsh completion script",
}
COMMAND_MODULES = tuple(COMMANDS)
# Global options that take a value: the word after them is never the command.
_VALUED_OPTIONS = frozenset({"--log-format"})
USAGE_ERROR = 1


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which ``plan --detailed-exitcode`` means as "changes": exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command word in argv, found the way argparse will find it (the first word that is not an option)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word in _VALUED_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None, *, full: bool = True) -> argparse.ArgumentParser:
    """The parser; with ``full=False`` only ``only`` is registered for real, the rest are one-line stubs."""
    parser = Parser(  # subparsers inherit the class, so every level exits 1 on a usage error
        prog="reconciler",
        description="Keep the MCP servers on Agentopia toolboxes as the manifests say.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-reconciler {__version__}")
    _add_global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_line in COMMANDS.items():
        if full or name == only:
            importlib.import_module(f"reconciler.cli.{name.replace('-', '_')}_cmd").register(sub)
        else:
            sub.add_parser(name, help=help_line)
    for command in sub.choices.values():
        # Accepted after the command too (`reconciler apply m/ --log-format json`); SUPPRESS keeps a value
        # given before the command from being reset by the subparser's default.
        _add_global_options(command, defaults=False)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None if defaults else argparse.SUPPRESS,
        help="log and progress lines as text or JSON lines (default: $RECONCILER_LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if defaults else argparse.SUPPRESS,
        help="more log output (-vv debug)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(chosen_command(words), full=False)
    args = parser.parse_args(words)
    from reconciler.errors import ReconcilerError
    from reconciler.logs import log_format, setup_logging

    try:
        args.log_format = log_format(args.log_format, os.environ)
    except ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    setup_logging(fmt=args.log_format, verbosity=args.verbose)
    try:
        code: int = args.handler(args)
    except ReconcilerError as exc:
        from reconciler.presentation.failure import error_lines

        print("error: " + "\n".join(error_lines(exc)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
