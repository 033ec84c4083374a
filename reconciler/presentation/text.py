"""The plan as text, like ``terraform plan``. Colour only when the caller asks (a TTY without NO_COLOR)."""

from __future__ import annotations

from reconciler.core.plan import Action, NoticeKind, Plan, Step
from reconciler.presentation.summary import counts_line

SYMBOLS: dict[Action, str] = {
    Action.CREATE: "+",
    Action.REPLACE: "-/+",
    Action.RESTART: "~",
    Action.START: "~",
    Action.STOP: "~",
    Action.DELETE: "-",
    Action.SYNC_STATUS: "~",
    Action.SYNC_CONFIG: "~",
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
}
_NOTICE_COLOURS = {NoticeKind.REFUSED: "31", NoticeKind.CONFLICT: "31", NoticeKind.UNREACHABLE: "33"}


def _paint(text: str, code: str | None, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def summary_line(plan: Plan) -> str:
    if not plan.steps:
        return "No changes. The toolboxes match the manifests."
    return counts_line(plan)


def _step_lines(step: Step, color: bool) -> list[str]:
    head = f"{SYMBOLS[step.action]} {step.action.value} {step.server}"
    where = f"  ({step.source})" if step.source is not None and step.source.line > 0 else ""
    lines = [f"  {_paint(head, _COLOURS[step.action], color)}{where}", f"      # {step.reason}"]
    for ch in step.changes:
        lines.append(f"      {ch.field}: {ch.old if ch.old is not None else '(none)'} -> "
                     f"{ch.new if ch.new is not None else '(none)'}")  # fmt: skip
    if step.status_to is not None and step.action is Action.SYNC_STATUS:
        lines.append(f"      status_on_toolbox := {step.status_to}")
    return lines


def render_text(plan: Plan, *, color: bool = False) -> str:
    lines: list[str] = []
    for err in plan.errors:
        lines.append(_paint(f"Error: {err}", "31", color))
    current: tuple[str, str] | None = None
    for step in plan.steps:
        key = (step.environment_name, step.environment_id)
        if key != current:
            current = key
            lines += ["", f"environment {step.environment_name} ({step.environment_id}):"]
        lines += _step_lines(step, color)
    if plan.notices:
        lines += ["", "Notices:"]
        for n in plan.notices:
            who = f"{n.environment_name}/{n.server}" if n.server else n.environment_name
            where = f"  ({n.source})" if n.source is not None and n.source.line > 0 else ""
            lines.append(
                f"  {_paint(f'! {n.kind.value}', _NOTICE_COLOURS.get(n.kind), color)} {who}: {n.message}{where}"
            )
    lines += ["", _paint(summary_line(plan), "1", color)]
    return "\n".join(lines).lstrip("\n") + "\n"
