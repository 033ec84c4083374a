"""A journal that cannot be written, read, opened or grown ends a command with one line naming the file and
the fix (exit 1, no traceback, nothing applied); ``reconciler journal`` reads a journal it cannot write."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.adapters.journal import Journal
from reconciler.app.stores import migrate_database
from reconciler.errors import JournalError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MANIFEST = "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\nservers: []\n"
# Running as root, file modes do not bind: drop the capabilities that bypass them, as an ordinary user has.
UNPRIVILEGED = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = root / "m.yaml"
        self.manifest.write_text(MANIFEST)
        self.database = f"sqlite:///{root / 'state.db'}"
        migrate_database(self.database)

    def cli(self, *args: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
        prefix: list[str] = []
        if unprivileged and os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: file modes cannot be made to bind")
            prefix = UNPRIVILEGED
        env = {**os.environ, "RECONCILER_SECRET_KEY": "test-key"}  # the key file is not under test here
        return subprocess.run(
            [*prefix, sys.executable, "-m", "reconciler", *args],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def plan(self, journal: Path | str, *, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "plan", str(self.manifest), "--database", self.database, "--journal", str(journal),
            unprivileged=unprivileged,
        )  # fmt: skip

    def runs(self, journal: Path, *, unprivileged: bool = False) -> list[dict[str, object]]:
        done = self.cli("journal", "--journal", str(journal), "--format", "json", unprivileged=unprivileged)
        assert done.returncode == 0, done.stderr
        runs: list[dict[str, object]] = json.loads(done.stdout)
        return runs


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def one_error_line(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def a_journal(setup: Setup, folder: Path, runs: int = 1) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "j.db"
    journal = Journal(path)
    for _ in range(runs):
        run = journal.start_run("plan", NOW)
        journal.intent(run, NOW, environment="tb", server="s", action="create", reason="absent " * 50)
        journal.finish_run(run, NOW, "changes")
    journal.close()
    return path


@pytest.fixture
def restore_modes(tmp_path: Path) -> Iterator[None]:
    yield
    for path in tmp_path.rglob("*"):  # so that pytest can remove tmp_path
        path.chmod(0o755)


def test_a_file_in_place_of_the_journal_directory(setup: Setup) -> None:
    blocker = setup.root / "not-a-dir"
    blocker.write_text("x")
    line = one_error_line(setup.plan(blocker / "j.db"), str(blocker), "is a file, not a directory", "--journal")
    assert line.startswith("error: cannot create the directory of journal")


def test_a_journal_path_that_cannot_exist(setup: Setup) -> None:
    one_error_line(setup.plan("/proc/nope/j.db"), "/proc/nope/j.db", "--journal (RECONCILER_JOURNAL)")


@pytest.mark.usefixtures("restore_modes")
def test_read_only_journal_file_refuses_plan_but_reads(setup: Setup) -> None:
    path = a_journal(setup, setup.root / "j")
    path.chmod(0o444)
    one_error_line(setup.plan(path, unprivileged=True), str(path), "is read-only", "writable")
    assert len(setup.runs(path, unprivileged=True)) == 1  # `reconciler journal` opens it read-only


@pytest.mark.usefixtures("restore_modes")
def test_read_only_journal_directory_refuses_plan_but_reads(setup: Setup) -> None:
    path = a_journal(setup, setup.root / "j")
    for file in path.parent.iterdir():  # the journal and its -wal and -shm files, if any
        file.chmod(0o444)
    path.parent.chmod(0o555)
    one_error_line(setup.plan(path, unprivileged=True), str(path), "read-only", "directory writable")
    one_error_line(setup.plan(path.parent / "new.db", unprivileged=True), "new.db", "writable")
    [run] = setup.runs(path, unprivileged=True)
    assert run["kind"] == "plan"


def test_journal_of_junk_bytes(setup: Setup) -> None:
    path = setup.root / "junk.db"
    path.write_bytes(bytes(range(256)) * 40)
    fix = f"mv {path} {path}.damaged"
    one_error_line(setup.plan(path), "is damaged", fix)
    one_error_line(setup.cli("journal", "--journal", str(path)), "is damaged", fix)
    for command in (["apply"], ["run", "--once"]):  # stopped before anything is applied
        done = setup.cli(*command, str(setup.manifest), "--database", setup.database, "--journal", str(path))
        one_error_line(done, "is damaged", fix)


@pytest.mark.parametrize("size", [100, 8192])
def test_truncated_journal(setup: Setup, size: int) -> None:
    path = a_journal(setup, setup.root / "j", runs=40)
    assert path.stat().st_size > 3 * size
    with path.open("r+b") as handle:
        handle.truncate(size)
    one_error_line(setup.plan(path), str(path), "is damaged", "mv ")
    path.rename(path.with_suffix(".damaged"))  # the fix the message gives
    setup.plan(path)
    assert len(setup.runs(path)) == 1


def test_journal_locked_by_another_writer(setup: Setup) -> None:
    path = a_journal(setup, setup.root / "j")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO runs (kind) VALUES ('other-writer')")
    try:
        one_error_line(setup.plan(path), str(path), "is locked by another process", "waited 5 s")
        assert len(setup.runs(path)) == 1  # readers are not blocked (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    setup.plan(path)
    assert len(setup.runs(path)) == 2


def test_journal_run_that_does_not_exist(setup: Setup) -> None:
    path = a_journal(setup, setup.root / "j")
    one_error_line(setup.cli("journal", "--journal", str(path), "--run", "9999"), "no run 9999", str(path))


def test_full_disk_then_recovery(setup: Setup) -> None:
    """A 256 KiB tmpfs in a private mount namespace: fill it, plan, free it, plan again."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small tmpfs")
    mount = setup.root / "small"
    mount.mkdir()
    journal = mount / "j.db"
    argv = [sys.executable, "-m", "reconciler", "plan", str(setup.manifest), "--database", setup.database,
            "--journal", str(journal)]  # fmt: skip
    plan = " ".join(argv)
    script = f"""
        mount -t tmpfs -o size=256k tmpfs {mount} || exit 99
        {plan} >/dev/null 2>&1
        dd if=/dev/zero of={mount}/filler bs=4k 2>/dev/null
        {plan} >/dev/null 2>{setup.root}/full.err; echo $? > {setup.root}/full.rc
        rm {mount}/filler
        {plan} >/dev/null 2>{setup.root}/freed.err
        {sys.executable} -m reconciler journal --journal {journal} --format json > {setup.root}/runs.json
    """
    env = {**os.environ, "RECONCILER_SECRET_KEY": "test-key"}
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    if done.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    full = subprocess.CompletedProcess(
        [], int((setup.root / "full.rc").read_text()), "", (setup.root / "full.err").read_text()
    )
    one_error_line(full, str(journal), "the disk is full", f"free space on {mount}")
    assert "journal" not in (setup.root / "freed.err").read_text()
    assert len(json.loads((setup.root / "runs.json").read_text())) == 2  # the first and the recovered run


def test_full_journal_is_one_error_and_the_next_write_goes_on(tmp_path: Path) -> None:
    """Without a small file system: SQLite's max_page_count makes the file unable to grow."""
    journal = Journal(tmp_path / "j.db")
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count = {pages}")
    run = journal.start_run("apply", NOW)
    with pytest.raises(JournalError, match="the disk is full") as caught:
        for _ in range(2000):
            journal.intent(run, NOW, environment="tb", server="s", action="create", reason="x" * 200)
    assert str(tmp_path) in str(caught.value)
    written = len(journal.steps(run_id=run))
    journal._db.execute("PRAGMA max_page_count = 1000000")  # space freed
    journal.intent(run, NOW, environment="tb", server="s", action="create", reason="after")
    assert len(journal.steps(run_id=run)) == written + 1
    journal.close()


def test_read_only_journal_never_writes_and_reads_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"")
    reader = Journal(path, read_only=True)
    assert reader.runs() == [] and reader.steps() == []
    with pytest.raises(JournalError, match="read-only"):
        reader.start_run("plan", NOW)
    reader.close()
    assert path.read_bytes() == b""


def test_db_migrate_with_a_file_in_place_of_the_database_directory(setup: Setup) -> None:
    blocker = setup.root / "hostname"
    blocker.write_text("x")
    url = f"sqlite:///{blocker}/state.db"
    done = setup.cli("db", "migrate", "--database", url)
    one_error_line(done, str(blocker), "is a file, not a directory", "--database")
    one_error_line(
        setup.cli("db", "migrate", "--database", "sqlite:////proc/nope/state.db"), "/proc/nope/state.db"
    )
    assert blocker.read_text() == "x"


def test_db_add_environment_refuses_a_name_with_a_control_character(setup: Setup) -> None:
    done = setup.cli("db", "add-environment", "tb\x1b[31m", "--address", "10.0.0.1", "--database", setup.database)
    one_error_line(done, "'tb\\x1b[31m'", "control character (U+001B)")
    listed = setup.cli("db", "environments", "--database", setup.database)
    assert "no environments registered" in listed.stdout
