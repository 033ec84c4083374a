"""Pick a plan format by name: the one entry point the CLI calls."""

from __future__ import annotations

import json

from reconciler.core.plan import Plan
from reconciler.core.verdict import Verdict

FORMATS = ("text", "json", "markdown", "github")


def render_plan(plan: Plan, fmt: str, *, color: bool = False, verdict: Verdict | None = None) -> str:
    """``verdict`` carries the toolboxes' addresses when the caller observed them; else the renderers judge
    the plan alone (names only)."""
    if fmt == "json":
        from reconciler.core.verdict import verdict_of
        from reconciler.presentation.plan_json import plan_to_dict

        verdict = verdict_of(plan) if verdict is None else verdict
        return json.dumps(plan_to_dict(plan, verdict=verdict), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        from reconciler.presentation.markdown import render_markdown

        return render_markdown(plan, verdict=verdict)
    if fmt == "github":
        from reconciler.presentation.github import render_github

        return render_github(plan, verdict=verdict)
    from reconciler.presentation.text import render_text

    return render_text(plan, color=color, verdict=verdict)
