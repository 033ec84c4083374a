"""Control characters from manifests or agents are shown as escapes by every renderer, never obeyed.

A server or env value holding ESC[31m, a bell or CR/LF would otherwise recolour the terminal or forge a line
("No changes.", a fake ``::notice`` annotation, a fake table row).
"""

from __future__ import annotations

import json

import pytest

from reconciler.core.plan import Action, Change, Notice, NoticeKind, Plan, Step
from reconciler.errors import ConfigError, ManifestError, ManifestIssue
from reconciler.model.spec import SourceRef
from reconciler.presentation.escape import printable
from reconciler.presentation.failure import render_failure
from reconciler.presentation.render import FORMATS, render_plan

HOSTILE = "evil\x1b[31m\a\r\n::notice::No changes."
RAW = ("\x1b", "\a", "\r")


def hostile_plan() -> Plan:
    src = SourceRef(f"m/{HOSTILE}.yaml", 3)
    step = Step(
        "env-1",
        f"tb-{HOSTILE}",
        f"srv-{HOSTILE}",
        Action.REPLACE,
        f"image changed {HOSTILE}",
        changes=(Change("env.GREETING", "hello", HOSTILE), Change("image", None, f"img:{HOSTILE}")),
        source=src,
    )
    notice = Notice("env-1", f"tb-{HOSTILE}", f"srv-{HOSTILE}", NoticeKind.CONFLICT, f"agent said {HOSTILE}", src)
    return Plan((step,), (notice,), errors=(f"secret {HOSTILE} is not set",))


def test_printable_escapes_controls_visibly_and_leaves_other_text_alone() -> None:
    assert printable("a\x1b[31mb\a\r\n\t\x7f\x85\u202e") == "a\\x1b[31mb\\x07\\r\\n\\t\\x7f\\x85\\u202e"
    assert printable("héllo → wörld, 名前") == "héllo → wörld, 名前"


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_renderer_prints_a_raw_control_character_or_a_forged_line(fmt: str) -> None:
    out = render_plan(hostile_plan(), fmt, color=False)
    assert not [c for c in RAW if c in out]
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith(("::notice::No changes", "No changes"))]
    if fmt == "github":  # the incomplete headline, one annotation per error, step and notice, the summary
        assert len(lines) == 5 and all(line.startswith("::") for line in lines[:4])
    if fmt == "json":  # JSON escapes them itself; the values survive intact
        data = json.loads(out)
        assert data["steps"][0]["changes"][0]["new"] == HOSTILE


def test_text_shows_the_escapes_where_the_values_were() -> None:
    out = render_plan(hostile_plan(), "text")
    assert "      env.GREETING: hello -> evil\\x1b[31m\\x07\\r\\n::notice::No changes." in out
    assert "environment tb-evil\\x1b[31m" in out and "-/+ replace srv-evil\\x1b[31m" in out


def test_colour_codes_are_the_renderers_own_only() -> None:
    out = render_plan(hostile_plan(), "text", color=True)
    assert "\x1b[35m-/+ replace srv-evil\\x1b[31m" in out  # our colour, then the value's escape shown


def test_markdown_cells_cannot_end_the_cell_or_open_html() -> None:
    plan = Plan((Step("e", "tb|x", "s</details><b>", Action.CREATE, "a|b"),))
    out = render_plan(plan, "markdown")
    assert "| tb\\|x | s&lt;/details&gt;&lt;b&gt; | create | a\\|b |" in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_failures_escape_them_too(fmt: str) -> None:
    issue = ManifestIssue(f"m/{HOSTILE}.yaml", 2, 5, "servers[0].name", f"bad name {HOSTILE}")
    for error in (ManifestError([issue]), ConfigError(f"cannot read {HOSTILE}")):
        out = render_failure(error, fmt)
        assert not [c for c in RAW if c in out]
        assert not [line for line in out.splitlines() if line.startswith("::notice")]
