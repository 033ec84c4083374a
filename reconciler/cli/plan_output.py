"""Where a plan goes besides stdout: numbered markdown parts for pull-request comments (``--split DIR``) and
the GitHub job summary (``$GITHUB_STEP_SUMMARY``, with ``--format github``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

STEP_SUMMARY_LIMIT = 1_000_000  # GitHub refuses a job summary over 1 MiB


def add_split(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--split",
        metavar="DIR",
        help="also write the markdown as numbered comment bodies DIR/part-001.md... (each valid markdown, under "
        "GitHub's 65,536-character limit)",
    )


def write_extras(args: argparse.Namespace, plan: Any, verdict: Any, scope: Any) -> None:
    from reconciler.presentation.markdown import render_markdown, render_markdown_parts

    notes = scope.notes()
    if getattr(args, "split", None):
        folder = Path(args.split)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part-*.md"):
            old.unlink()
        for i, part in enumerate(render_markdown_parts(plan, verdict=verdict, notes=notes), 1):
            (folder / f"part-{i:03d}.md").write_text(part, encoding="utf-8")
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.format == "github" and summary_path:
        text = render_markdown(plan, verdict=verdict, notes=notes)
        if len(text) > STEP_SUMMARY_LIMIT:
            parts = render_markdown_parts(plan, verdict=verdict, notes=notes, limit=STEP_SUMMARY_LIMIT - 500)
            text = (
                parts[0] + f"\n> The plan has {len(parts)} parts; the rest is in the log and the plan artifact.\n"
            )
        with open(summary_path, "a", encoding="utf-8") as f:
            f.write(text)
