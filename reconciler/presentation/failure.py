"""An error that stopped the plan, in the plan's format: a CI comment or annotation is never empty.

Invalid manifests are shown issue by issue with their file, line and column; any other error as one message.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.errors import ManifestError, ManifestIssue, ReconcilerError
from reconciler.presentation.escape import printable
from reconciler.presentation.github import escape_data, escape_property
from reconciler.presentation.markdown import cell

FORMAT_VERSION = 1


def _issues(error: ReconcilerError) -> list[ManifestIssue]:
    return list(error.issues) if isinstance(error, ManifestError) else []


def _headline(error: ReconcilerError) -> str:
    issues = _issues(error)
    if issues:
        count = f"{len(issues)} issue" if len(issues) == 1 else f"{len(issues)} issues"
        return f"The manifests are invalid ({count}); no plan was made."
    return "No plan was made."


def render_failure(error: ReconcilerError, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(failure_to_dict(error), indent=2, sort_keys=True) + "\n"
    if fmt == "github":
        return render_failure_github(error)
    if fmt == "markdown":
        return render_failure_markdown(error)
    return "\n".join(error_lines(error)) + "\n"


def error_lines(error: ReconcilerError) -> list[str]:
    """The error as text lines, one per manifest issue; no line can be forged by a value inside one."""
    issues = _issues(error)
    return [printable(i) for i in issues] if issues else [printable(error)]


def failure_to_dict(error: ReconcilerError) -> dict[str, Any]:
    issues = _issues(error)
    return {
        "format_version": FORMAT_VERSION,
        "error": {
            "kind": "invalid-manifests" if issues else "error",
            "message": _headline(error) if issues else str(error),
            "issues": [
                {"file": i.file, "line": i.line, "column": i.column, "path": i.path, "message": i.message}
                for i in issues
            ],
        },
    }


def render_failure_github(error: ReconcilerError) -> str:
    issues = _issues(error)
    if not issues:
        return f"::error::{escape_data(str(error))}\n"
    lines = []
    for i in issues:
        where = f"file={escape_property(i.file)},line={i.line},col={i.column}"
        lines.append(f"::error {where}::{escape_data(f'{i.path}: {i.message}')}")
    return "\n".join([*lines, _headline(error)]) + "\n"


def render_failure_markdown(error: ReconcilerError) -> str:
    lines = ["### mcp-reconciler plan", "", f"> :x: **{_headline(error)}**"]
    issues = _issues(error)
    if issues:
        lines += ["", "| file | line | column | path | message |", "|---|---:|---:|---|---|"]
        lines += [
            f"| {cell(i.file)} | {i.line} | {i.column} | {cell(i.path)} | {cell(i.message)} |" for i in issues
        ]
    else:
        lines.append(f"> {cell(str(error))}")
    return "\n".join(lines) + "\n"
