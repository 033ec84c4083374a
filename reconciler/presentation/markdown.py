"""The plan as markdown for a pull-request comment: one summary table first, the details collapsed per
environment; split into several comments, each valid markdown, when it is over GitHub's limit.

A comment body holds at most 65,536 characters. Cutting a rendered plan there can cut ``</details>`` and break
the markup, so the plan is rendered as blocks that each stand alone (a table, or one environment's details
with its own table header), and the parts are packed from whole blocks; an environment too big for one part is
continued in the next one under the same heading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.core.plan import Notice, Plan, Step
from reconciler.core.verdict import Verdict, verdict_of
from reconciler.presentation.escape import printable
from reconciler.presentation.rollouts import HEADLINE, rollout_title, wave_text
from reconciler.presentation.summary import SUMMARY_KEYS, gap_text, incomplete_headline, summary_counts

GITHUB_COMMENT_LIMIT = 65_536
TITLE = "### mcp-reconciler plan"
_STEP_HEADER = ["| environment | server | action | reason | changes | source |", "|---|---|---|---|---|---|"]
_NOTICE_HEADER = ["| environment | server | kind | message |", "|---|---|---|---|"]


def cell(text: object) -> str:
    """Text for a table cell or a quote: control characters shown, and nothing that ends the cell, opens
    HTML (a manifest could close the <details> block) or a code span."""
    return printable(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("`", "\\`")


def _value(value: str | None) -> str:
    return "(none)" if value is None else cell(value)


def _step_row(s: Step) -> str:
    changes = "<br>".join(f"`{cell(c.field)}`: {_value(c.old)} → {_value(c.new)}" for c in s.changes)
    source = cell(s.source) if s.source is not None and s.source.line > 0 else ""
    return (
        f"| {cell(s.environment_name)} | {cell(s.server)} | {s.action.value} | {cell(s.reason)} "
        f"| {changes} | {source} |"
    )


def _notice_row(n: Notice) -> str:
    return f"| {cell(n.environment_name)} | {cell(n.server or '')} | {n.kind.value} | {cell(n.message)} |"


@dataclass(frozen=True)
class _Section:
    """One environment's details: its heading and its rows (steps, then notices)."""

    summary: str
    steps: tuple[str, ...]
    notices: tuple[str, ...]


def _environments(plan: Plan) -> list[tuple[str, list[Step], list[Notice]]]:
    order: dict[str, tuple[list[Step], list[Notice]]] = {}
    for s in plan.steps:
        order.setdefault(s.environment_name, ([], []))[0].append(s)
    for n in plan.notices:
        order.setdefault(n.environment_name, ([], []))[1].append(n)
    return [(name, steps, notices) for name, (steps, notices) in order.items()]


def _head(plan: Plan, verdict: Verdict, notes: Sequence[str]) -> str:
    lines: list[str] = []
    for note in notes:  # a partial plan, or one made without reading the live state
        lines += [f"> :warning: {cell(note)}", ""]
    if not verdict.complete:  # said first: what this plan does not cover, and why
        lines.append(f"> :x: **{cell(incomplete_headline(verdict))}**")
        lines += [f"> - {cell(gap_text(g))}" for g in verdict.gaps if g.environment is not None]
        if not plan.steps:
            lines += ["", "No changes planned for what was observed; the toolboxes named above were not covered."]
    elif not plan.steps:
        lines.append("**No changes.** The toolboxes match the manifests.")
    adopting = summary_counts(plan)["adopt"] > 0
    keys = [k for k, _ in SUMMARY_KEYS if k != "adopt" or adopting]  # the adopt column only when at work
    lines += ["", "| environment | " + " | ".join(keys) + " | notices |", "|---|" + "---:|" * (len(keys) + 1)]
    envs = _environments(plan)
    for name, steps, notices in envs:
        counts = summary_counts(Plan(steps=tuple(steps)))
        lines.append(f"| {cell(name)} | " + " | ".join(str(counts[k]) for k in keys) + f" | {len(notices)} |")
    if len(envs) != 1:
        total = summary_counts(plan)
        lines.append("| **total** | " + " | ".join(str(total[k]) for k in keys) + f" | {len(plan.notices)} |")
    health = plan.health_line()
    if health is not None:
        lines += ["", cell(health[0].upper() + health[1:])]
    destructive = sum(1 for s in plan.steps if s.destructive)
    if destructive:
        lines += ["", f"> :warning: {destructive} destructive step(s)."]
    for err in plan.errors:
        lines += ["", f"> :x: {cell(err)}"]
    return "\n".join(lines)


def _rollouts(plan: Plan) -> str:
    lines = [f"**{cell(HEADLINE)}**", ""]
    for r in plan.rollouts:
        lines.append(f"- {cell(rollout_title(r))}")
        lines += [f"  - {cell(wave_text(w))}" for w in r.waves]
    return "\n".join(lines)


def _sections(plan: Plan) -> list[_Section]:
    out = []
    for name, steps, notices in _environments(plan):
        summary = f"{cell(name)}: {len(steps)} step(s), {len(notices)} notice(s)"
        out.append(_Section(summary, tuple(_step_row(s) for s in steps), tuple(_notice_row(n) for n in notices)))
    return out


def _details(summary: str, steps: Sequence[str], notices: Sequence[str]) -> str:
    lines = [f"<details><summary>{summary}</summary>", ""]
    if steps:
        lines += [*_STEP_HEADER, *steps, ""]
    if notices:
        lines += [*_NOTICE_HEADER, *notices, ""]
    lines.append("</details>")
    return "\n".join(lines)


def _blocks(plan: Plan, verdict: Verdict, notes: Sequence[str], budget: int) -> list[str]:
    """The head, then each environment's details; one too big for ``budget`` becomes several blocks."""
    blocks = [_head(plan, verdict, notes)]
    if plan.rollouts:
        blocks.append(_rollouts(plan))
    overhead = len(_details("x" * 200, ["x"], ["x"])) + len("\n".join(_STEP_HEADER + _NOTICE_HEADER))
    for section in _sections(plan):
        whole = _details(section.summary, section.steps, section.notices)
        if len(whole) <= budget:
            blocks.append(whole)
            continue
        rows = [("s", r) for r in section.steps] + [("n", r) for r in section.notices]
        chunk: list[tuple[str, str]] = []
        size = overhead
        part = 1
        for kind, row in rows:
            if chunk and size + len(row) + 1 > budget:
                blocks.append(_chunk(section.summary, part, chunk))
                chunk, size, part = [], overhead, part + 1
            chunk.append((kind, row))
            size += len(row) + 1
        if chunk:
            blocks.append(_chunk(section.summary, part, chunk))
    return blocks


def _chunk(summary: str, part: int, rows: Sequence[tuple[str, str]]) -> str:
    label = summary if part == 1 else f"{summary} (continued, {part})"
    return _details(label, [r for k, r in rows if k == "s"], [r for k, r in rows if k == "n"])


def render_markdown(plan: Plan, *, verdict: Verdict | None = None, notes: Sequence[str] = ()) -> str:
    """The whole plan as one markdown document (a job summary, a file)."""
    verdict = verdict_of(plan) if verdict is None else verdict
    blocks = _blocks(plan, verdict, notes, budget=10**12)
    return "\n\n".join([TITLE, *blocks]) + "\n"


def render_markdown_parts(
    plan: Plan,
    *,
    verdict: Verdict | None = None,
    notes: Sequence[str] = (),
    limit: int = GITHUB_COMMENT_LIMIT,
    reserve: int = 200,
) -> list[str]:
    """The plan as comment bodies of at most ``limit - reserve`` characters each (``reserve`` is left for
    the caller's marker line), each valid markdown on its own: one part when it fits."""
    verdict = verdict_of(plan) if verdict is None else verdict
    whole = render_markdown(plan, verdict=verdict, notes=notes)
    budget = limit - reserve
    if len(whole) <= budget:
        return [whole]
    title_room = len(TITLE) + 40  # "### mcp-reconciler plan (part 12 of 34)" and blank lines
    blocks = _blocks(plan, verdict, notes, budget=budget - title_room)
    packed: list[list[str]] = [[]]
    size = 0
    for block in blocks:
        if packed[-1] and size + len(block) + 2 > budget - title_room:
            packed.append([])
            size = 0
        packed[-1].append(block)
        size += len(block) + 2
    n = len(packed)
    return ["\n\n".join([f"{TITLE} (part {i} of {n})", *group]) + "\n" for i, group in enumerate(packed, 1)]
