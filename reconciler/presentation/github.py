"""The plan as GitHub Actions workflow commands: annotations on the manifest lines that asked for them."""

from __future__ import annotations

from reconciler.core.plan import Notice, NoticeKind, Plan
from reconciler.model.spec import SourceRef
from reconciler.presentation.summary import counts_line

# Notices that stop part of the plan from happening: shown as errors.
ERROR_KINDS = frozenset({NoticeKind.REFUSED, NoticeKind.CONFLICT, NoticeKind.UNKNOWN_ENVIRONMENT})
WARNING_KINDS = frozenset({NoticeKind.UNREACHABLE, NoticeKind.UNKNOWN_STATE, NoticeKind.STALLED})


def _escape(text: str) -> str:
    # Workflow-command data escaping: %, CR and LF (properties also escape : and ,).
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def _where(source: SourceRef | None) -> str:
    if source is None or source.line <= 0:
        return ""
    return f" file={_prop(source.file)},line={source.line}"


def _notice_level(n: Notice) -> str:
    if n.kind in ERROR_KINDS:
        return "error"
    if n.kind in WARNING_KINDS:
        return "warning"
    return "notice"


def render_github(plan: Plan) -> str:
    lines: list[str] = []
    for err in plan.errors:
        lines.append(f"::error::{_escape(err)}")
    for s in plan.steps:
        level = "warning" if s.destructive else "notice"
        text = f"{s.action.value} {s.environment_name}/{s.server}: {s.reason}"
        lines.append(f"::{level}{_where(s.source)}::{_escape(text)}")
    for n in plan.notices:
        who = f"{n.environment_name}/{n.server}" if n.server else n.environment_name
        lines.append(f"::{_notice_level(n)}{_where(n.source)}::{_escape(f'{n.kind.value} {who}: {n.message}')}")
    lines.append(counts_line(plan))
    return "\n".join(lines) + "\n"
