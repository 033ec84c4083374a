"""The plan as GitHub Actions workflow commands: annotations on the manifest lines that asked for them."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.plan import Notice, NoticeKind, Plan
from reconciler.core.verdict import Verdict, gap_kind, verdict_of
from reconciler.model.spec import SourceRef
from reconciler.presentation.escape import printable
from reconciler.presentation.summary import gap_text, incomplete_headline, summary_line

# Notices that stop part of the plan from happening: shown as errors.
WARNING_KINDS = frozenset({NoticeKind.UNREACHABLE, NoticeKind.UNKNOWN_STATE, NoticeKind.STALLED})


def escape_data(text: str) -> str:
    # Control characters become visible first (a CR/LF from a manifest is shown, not obeyed); then the
    # workflow-command data escaping of %, CR and LF (properties also escape : and ,).
    return printable(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _where(source: SourceRef | None) -> str:
    if source is None or source.line <= 0:
        return ""
    return f" file={escape_property(source.file)},line={source.line}"


def _notice_level(n: Notice) -> str:
    if gap_kind(n) is not None:  # a gap in the plan is an error, not a warning
        return "error"
    if n.kind in WARNING_KINDS:
        return "warning"
    return "notice"


ANNOTATIONS_PER_LEVEL = 10  # GitHub shows at most 10 annotations of each level per step; it drops the rest


def render_github(
    plan: Plan, *, verdict: Verdict | None = None, notes: Sequence[str] = (), cap: int = ANNOTATIONS_PER_LEVEL
) -> str:
    """Workflow commands, at most ``cap`` annotations per level: the rest are printed as plain log lines and
    counted in a final notice, so nothing vanishes without a word."""
    verdict = verdict_of(plan) if verdict is None else verdict
    items: list[tuple[str, str]] = [("warning", f" title=Plan scope::{escape_data(n)}") for n in notes]
    if not verdict.complete:  # said first, as an error: what this plan does not cover, and why
        gaps = "; ".join(gap_text(g) for g in verdict.gaps if g.environment is not None)
        headline = escape_data(f"{incomplete_headline(verdict)} {gaps}".strip())
        items.append(("error", f" title=Incomplete plan::{headline}"))
    for err in plan.errors:
        items.append(("error", f"::{escape_data(err)}"))
    for s in plan.steps:
        level = "warning" if s.destructive else "notice"
        text = f"{s.action.value} {s.environment_name}/{s.server}: {s.reason}"
        items.append((level, f"{_where(s.source)}::{escape_data(text)}"))
    for n in plan.notices:
        who = f"{n.environment_name}/{n.server}" if n.server else n.environment_name
        text = f"{n.kind.value} {who}: {n.message}"
        items.append((_notice_level(n), f"{_where(n.source)}::{escape_data(text)}"))
    levels = ("error", "warning", "notice")
    total = {lv: sum(1 for level, _ in items if level == lv) for lv in levels}
    overflow = any(total[lv] > cap for lv in levels)
    # The "and N more" notice is itself a notice: it takes the last notice slot.
    room = {"error": cap, "warning": cap, "notice": cap - 1 if overflow else cap}
    shown = dict.fromkeys(levels, 0)
    lines: list[str] = []
    for level, rest in items:
        if shown[level] < room[level]:
            shown[level] += 1
            lines.append(f"::{level}{rest}")
        else:  # still in the log, as plain text (a workflow command would be dropped)
            lines.append(f"{level}: {rest.split('::', 1)[-1]}")
    if overflow:
        hidden = ", ".join(f"{total[lv] - shown[lv]} {lv}(s)" for lv in levels if total[lv] > shown[lv])
        lines.append(
            f"::notice title=More in the log::and {hidden} more not shown as annotations (GitHub shows "
            f"{cap} per level); the full plan is in the log above and in the job summary"
        )
    lines.append(summary_line(plan, verdict))
    return "\n".join(lines) + "\n"
