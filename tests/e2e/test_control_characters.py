"""Names written straight into the database rows and the journal (manifests reject control characters, but
rows and journals come from elsewhere): `status` and `journal` show them escaped, never obeyed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.demo_cmd import echo
from reconciler.core.plan import Notice, NoticeKind, Plan
from tests.e2e.conftest import World, _make_world, server

HOSTILE = "tb\x1b[31m"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    gen = _make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 1)
    w = next(gen)
    w.write({"tb0": [server("srv-a")]})
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stderr
    yield w
    gen.close()


def raw_controls(text: str) -> list[str]:
    return [c for c in text if c in "\x1b\r\x07"]


def test_status_escapes_a_name_from_the_database(world: World) -> None:
    with sqlite3.connect(world.tmp / "state.db") as db:
        db.execute("UPDATE account_tool_environments SET name = ?", (HOSTILE + "\r\nforged/line",))
    done = world.cli("status")
    assert done.returncode == 0, done.stderr
    assert raw_controls(done.stdout) == []
    assert "tb\\x1b[31m\\r\\nforged/line/srv-a" in done.stdout
    header, *lines = done.stdout.splitlines()
    assert header.startswith("desired = the state recorded at the last apply") and len(lines) == 1  # none forged


def test_journal_escapes_names_reasons_and_errors(world: World) -> None:
    with sqlite3.connect(world.tmp / "journal.db") as db:
        db.execute("UPDATE steps SET environment = ?, reason = ?, error = ?",
                   (HOSTILE, "bell\x07", "boom\r\nrun 99 apply -> converged"))  # fmt: skip
    done = world.cli("journal")
    assert done.returncode == 0, done.stderr
    assert raw_controls(done.stdout) == []
    assert "tb\\x1b[31m/srv-a" in done.stdout and "bell\\x07" in done.stdout
    assert "boom\\r\\nrun 99 apply -> converged" in done.stdout
    assert not any(line.startswith("run 99") for line in done.stdout.splitlines())


def test_demo_lines_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.app.demo import describe_plan

    notice = Notice("env-id", HOSTILE, "srv\x07", NoticeKind.ORPHAN, "kept\r\ncycle 9: in sync")
    for line in describe_plan(Plan(steps=(), notices=(notice,))):
        echo(line)
    out = capsys.readouterr().out
    assert raw_controls(out) == []
    assert "tb\\x1b[31m/srv\\x07" in out and "kept\\r\\ncycle 9: in sync" in out
    assert not any(line.startswith("cycle 9") for line in out.splitlines())
