"""The plan as markdown for a pull-request comment: a summary table first, the details collapsed."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.plan import Plan
from reconciler.core.verdict import Verdict, verdict_of
from reconciler.presentation.escape import printable
from reconciler.presentation.summary import SUMMARY_KEYS, gap_text, incomplete_headline, summary_counts


def cell(text: object) -> str:
    """Text for a table cell or a quote: control characters shown, and nothing that ends the cell, opens
    HTML (a manifest could close the <details> block) or a code span."""
    return printable(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("`", "\\`")


def render_markdown(plan: Plan, *, verdict: Verdict | None = None, notes: Sequence[str] = ()) -> str:
    counts = summary_counts(plan)
    verdict = verdict_of(plan) if verdict is None else verdict
    lines = ["### mcp-reconciler plan", ""]
    for note in notes:  # a partial plan, or one made without reading the live state
        lines += [f"> :warning: {cell(note)}", ""]
    if not verdict.complete:  # said first: what this plan does not cover, and why
        lines.append(f"> :x: **{cell(incomplete_headline(verdict))}**")
        lines += [f"> - {cell(gap_text(g))}" for g in verdict.gaps if g.environment is not None]
        if not plan.steps:
            lines += ["", "No changes planned for what was observed; the toolboxes named above were not covered."]
    elif not plan.steps:
        lines.append("**No changes.** The toolboxes match the manifests.")
    lines += ["", "| " + " | ".join(k for k, _ in SUMMARY_KEYS) + " |"]
    lines.append("|" + "---:|" * len(SUMMARY_KEYS))
    lines.append("| " + " | ".join(str(counts[k]) for k, _ in SUMMARY_KEYS) + " |")
    destructive = sum(1 for s in plan.steps if s.destructive)
    if destructive:
        lines += ["", f"> :warning: {destructive} destructive step(s)."]
    for err in plan.errors:
        lines += ["", f"> :x: {cell(err)}"]
    if plan.steps:
        lines += ["", f"<details><summary>{len(plan.steps)} step(s)</summary>", ""]
        lines += ["| environment | server | action | reason | changes | source |", "|---|---|---|---|---|---|"]
        for s in plan.steps:
            changes = "<br>".join(f"`{cell(c.field)}`: {cell(c.old)} → {cell(c.new)}" for c in s.changes)
            lines.append(
                f"| {cell(s.environment_name)} | {cell(s.server)} | {s.action.value} | {cell(s.reason)} "
                f"| {changes} | {cell(s.source or '')} |"
            )
        lines += ["", "</details>"]
    if plan.notices:
        lines += ["", f"<details><summary>{len(plan.notices)} notice(s)</summary>", ""]
        lines += ["| environment | server | kind | message |", "|---|---|---|---|"]
        for n in plan.notices:
            lines.append(
                f"| {cell(n.environment_name)} | {cell(n.server or '')} | {n.kind.value} | {cell(n.message)} |"
            )
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
