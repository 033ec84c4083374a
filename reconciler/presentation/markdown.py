"""The plan as markdown for a pull-request comment: a summary table first, the details collapsed."""

from __future__ import annotations

from reconciler.core.plan import Plan
from reconciler.presentation.summary import SUMMARY_KEYS, summary_counts


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan) -> str:
    counts = summary_counts(plan)
    lines = ["### mcp-reconciler plan", ""]
    if not plan.steps:
        lines.append("**No changes.** The toolboxes match the manifests.")
    lines += ["", "| " + " | ".join(k for k, _ in SUMMARY_KEYS) + " |"]
    lines.append("|" + "---:|" * len(SUMMARY_KEYS))
    lines.append("| " + " | ".join(str(counts[k]) for k, _ in SUMMARY_KEYS) + " |")
    destructive = sum(1 for s in plan.steps if s.destructive)
    if destructive:
        lines += ["", f"> :warning: {destructive} destructive step(s)."]
    for err in plan.errors:
        lines += ["", f"> :x: {_cell(err)}"]
    if plan.steps:
        lines += ["", f"<details><summary>{len(plan.steps)} step(s)</summary>", ""]
        lines += ["| environment | server | action | reason | changes | source |", "|---|---|---|---|---|---|"]
        for s in plan.steps:
            changes = "<br>".join(f"`{c.field}`: {c.old} → {c.new}" for c in s.changes)
            lines.append(
                f"| {_cell(s.environment_name)} | {_cell(s.server)} | {s.action.value} | {_cell(s.reason)} "
                f"| {_cell(changes)} | {s.source or ''} |"
            )
        lines += ["", "</details>"]
    if plan.notices:
        lines += ["", f"<details><summary>{len(plan.notices)} notice(s)</summary>", ""]
        lines += ["| environment | server | kind | message |", "|---|---|---|---|"]
        for n in plan.notices:
            lines.append(
                f"| {_cell(n.environment_name)} | {_cell(n.server or '')} | {n.kind.value} | {_cell(n.message)} |"
            )
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
