"""``reconciler validate PATH...``: schema and semantic checks, offline.

Exit 0 with one ``OK:`` line, or exit 1 with one line per issue. Issues go to **stdout** (so CI logs and
``--format github`` annotations show them without redirecting stderr); other errors go to stderr.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import Any

from reconciler.errors import ManifestError, ManifestIssue

EXAMPLE = """examples:
  reconciler validate examples/
  reconciler validate manifests/ --require-secrets
  reconciler validate manifests/ --format github     # annotations on the pull request's lines
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check manifests (schema and semantics), offline",
        description="Check manifest files or directories (*.yaml and *.yml, subdirectories included, sorted) "
        "without any database or network access. A YAML file found in a directory with none of the keys "
        "apiVersion, kind, environment and servers (a CI workflow) is not a manifest and is skipped. Prints one "
        "OK line and exits 0, or prints every issue as "
        "file:line:column: path: message on stdout and exits 1.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest file or directory")
    p.add_argument(
        "--require-secrets",
        action="store_true",
        help="also fail when a secretFromEnv variable is not set in this environment",
    )
    p.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="text (default) or GitHub Actions ::error annotations",
    )
    p.set_defaults(handler=run)


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def render_issues(issues: Iterable[ManifestIssue], fmt: str = "text") -> str:
    """One line per issue: ``file:line:column: path: message``, or a GitHub ``::error`` annotation."""
    if fmt == "github":
        return "\n".join(_annotation(i) for i in issues)
    return "\n".join(str(i) for i in issues)


def _annotation(issue: ManifestIssue) -> str:
    if issue.line <= 0:
        return f"::error file={_prop(issue.file)}::{_escape(issue.message)}"
    where = f"file={_prop(issue.file)},line={issue.line},col={issue.column}"
    return f"::error {where}::{_escape(f'{issue.path}: {issue.message}')}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run(args: argparse.Namespace) -> int:
    from reconciler.model.loader import load_manifests, resolve_secrets

    try:
        desired = load_manifests(args.paths)
        if args.require_secrets:
            resolve_secrets(desired, os.environ)
    except ManifestError as exc:
        print(render_issues(exc.issues, args.format))
        return 1
    servers = sum(len(e.servers) for e in desired.environments)
    print(
        f"OK: {_count(len(desired.environments), 'environment')}, {_count(servers, 'server')} "
        f"in {_count(len(desired.files), 'file')}"
    )
    return 0
