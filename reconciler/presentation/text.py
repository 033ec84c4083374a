"""The plan as text, like ``terraform plan``. Colour only when the caller asks (a TTY without NO_COLOR)."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.plan import Action, NoticeKind, Plan, Step
from reconciler.core.verdict import Verdict, verdict_of
from reconciler.presentation.escape import printable
from reconciler.presentation.rollouts import HEADLINE, rollout_lines
from reconciler.presentation.summary import gap_text, incomplete_headline, summary_line

SYMBOLS: dict[Action, str] = {
    Action.CREATE: "+",
    Action.REPLACE: "-/+",
    Action.RESTART: "~",
    Action.START: "~",
    Action.STOP: "~",
    Action.DELETE: "-",
    Action.SYNC_STATUS: "~",
    Action.SYNC_CONFIG: "~",
    Action.ADOPT: "<=",  # taken under management as it runs
}
_COLOURS: dict[Action, str] = {
    Action.CREATE: "32",
    Action.REPLACE: "35",
    Action.RESTART: "33",
    Action.START: "33",
    Action.STOP: "33",
    Action.DELETE: "31",
    Action.SYNC_STATUS: "36",
    Action.SYNC_CONFIG: "36",
    Action.ADOPT: "36",
}
_NOTICE_COLOURS = {NoticeKind.REFUSED: "31", NoticeKind.CONFLICT: "31", NoticeKind.UNREACHABLE: "33"}


def _paint(text: str, code: str | None, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def _value(value: str | None) -> str:
    return "(none)" if value is None else printable(value)


def _step_lines(step: Step, color: bool) -> list[str]:
    head = f"{SYMBOLS[step.action]} {step.action.value} {printable(step.server)}"
    where = f"  ({printable(step.source)})" if step.source is not None and step.source.line > 0 else ""
    lines = [f"  {_paint(head, _COLOURS[step.action], color)}{where}", f"      # {printable(step.reason)}"]
    # A sync step's one change is its status (status_on_toolbox: old -> new): shown once, as every change.
    lines += [f"      {printable(ch.field)}: {_value(ch.old)} -> {_value(ch.new)}" for ch in step.changes]
    return lines


def render_text(
    plan: Plan, *, color: bool = False, verdict: Verdict | None = None, notes: Sequence[str] = ()
) -> str:
    """``verdict`` (with the toolboxes' addresses) when the caller has one; else it is judged from the plan."""
    verdict = verdict_of(plan) if verdict is None else verdict
    lines: list[str] = [_paint(printable(n), "1;33", color) for n in notes]  # partial, or not refreshed
    if notes:
        lines.append("")
    if not verdict.complete:  # said first: what this plan does not cover, and why
        lines.append(_paint(incomplete_headline(verdict), "1;31", color))
        lines += [f"  ! {gap_text(g)}" for g in verdict.gaps if g.environment is not None]
        lines.append("")
    for err in plan.errors:
        lines.append(_paint(f"Error: {printable(err)}", "31", color))
    current: tuple[str, str] | None = None
    for step in plan.steps:
        key = (step.environment_name, step.environment_id)
        if key != current:
            current = key
            lines += ["", f"environment {printable(step.environment_name)} ({printable(step.environment_id)}):"]
        lines += _step_lines(step, color)
    if plan.rollouts:
        lines += ["", HEADLINE, *rollout_lines(plan.rollouts)]
    if plan.notices:
        lines += ["", "Notices:"]
        for n in plan.notices:
            who = printable(f"{n.environment_name}/{n.server}" if n.server else n.environment_name)
            where = f"  ({printable(n.source)})" if n.source is not None and n.source.line > 0 else ""
            lines.append(
                f"  {_paint(f'! {n.kind.value}', _NOTICE_COLOURS.get(n.kind), color)} {who}: "
                f"{printable(n.message)}{where}"
            )
    health = plan.health_line()
    if health is not None:
        lines += ["", printable(health)]
    lines += ["", _paint(summary_line(plan, verdict), "1" if verdict.complete else "1;31", color)]
    text = "\n".join(lines).strip("\n")
    while "\n\n\n" in text:  # one blank line between blocks, whichever blocks are present
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"
