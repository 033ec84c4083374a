"""The plan as GitHub Actions workflow commands: annotations on the manifest lines that asked for them."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.plan import Notice, NoticeKind, Plan
from reconciler.core.verdict import GAP_KINDS, Verdict, verdict_of
from reconciler.model.spec import SourceRef
from reconciler.presentation.escape import printable
from reconciler.presentation.summary import gap_text, incomplete_headline, summary_line

# Notices that stop part of the plan from happening: shown as errors.
ERROR_KINDS = frozenset({NoticeKind.REFUSED, NoticeKind.CONFLICT, NoticeKind.UNKNOWN_ENVIRONMENT})
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
    if n.kind in ERROR_KINDS or n.kind in GAP_KINDS:  # a gap in the plan is an error, not a warning
        return "error"
    if n.kind in WARNING_KINDS:
        return "warning"
    return "notice"


def render_github(plan: Plan, *, verdict: Verdict | None = None, notes: Sequence[str] = ()) -> str:
    verdict = verdict_of(plan) if verdict is None else verdict
    lines: list[str] = [f"::warning title=Plan scope::{escape_data(n)}" for n in notes]
    if not verdict.complete:  # said first, as an error: what this plan does not cover, and why
        gaps = "; ".join(gap_text(g) for g in verdict.gaps if g.environment is not None)
        headline = escape_data(f"{incomplete_headline(verdict)} {gaps}".strip())
        lines.append(f"::error title=Incomplete plan::{headline}")
    for err in plan.errors:
        lines.append(f"::error::{escape_data(err)}")
    for s in plan.steps:
        level = "warning" if s.destructive else "notice"
        text = f"{s.action.value} {s.environment_name}/{s.server}: {s.reason}"
        lines.append(f"::{level}{_where(s.source)}::{escape_data(text)}")
    for n in plan.notices:
        who = f"{n.environment_name}/{n.server}" if n.server else n.environment_name
        text = f"{n.kind.value} {who}: {n.message}"
        lines.append(f"::{_notice_level(n)}{_where(n.source)}::{escape_data(text)}")
    lines.append(summary_line(plan, verdict))
    return "\n".join(lines) + "\n"
