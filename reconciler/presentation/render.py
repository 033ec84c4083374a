"""Pick a plan format by name: the one entry point the CLI calls."""

from __future__ import annotations

import json

from reconciler.core.plan import Plan
from reconciler.core.scope import PlanScope
from reconciler.core.verdict import Verdict, verdict_of

FORMATS = ("text", "json", "markdown", "github")


def render_plan(
    plan: Plan, fmt: str, *, color: bool = False, verdict: Verdict | None = None, scope: PlanScope | None = None
) -> str:
    """``verdict`` carries the toolboxes' addresses when the caller observed them; else the renderers judge
    the plan alone, with the addresses ``scope`` kept (a saved plan shown by ``show``)."""
    scope = scope or PlanScope()
    if verdict is None:
        verdict = verdict_of(plan, addresses=scope.addresses)
    if fmt == "json":
        from reconciler.presentation.plan_json import plan_to_dict

        return json.dumps(plan_to_dict(plan, scope=scope, verdict=verdict), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        from reconciler.presentation.markdown import render_markdown

        return render_markdown(plan, verdict=verdict, notes=scope.notes())
    if fmt == "github":
        from reconciler.presentation.github import render_github

        return render_github(plan, verdict=verdict, notes=scope.notes())
    from reconciler.presentation.text import render_text

    return render_text(plan, color=color, verdict=verdict, notes=scope.notes())
