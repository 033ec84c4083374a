"""``reconciler completion bash|zsh``: a shell completion script generated from the parser itself (shtab)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLE = """example:
  reconciler completion bash > ~/.local/share/bash-completion/completions/reconciler
  reconciler completion zsh > "${fpath[1]}/_reconciler"
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "completion",
        help="print a bash or zsh completion script",
        description="Print a completion script for the shell, generated from this program's own parser: every "
        "command and flag completes.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from reconciler.cli import build_parser

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0
