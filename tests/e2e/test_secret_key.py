"""The key of the secret fingerprints: stored as a key id beside them, so fingerprints made with another
key plan no replace and say how to fix it; never made silently when the database already holds
fingerprints; where a new key was written is said; a key that cannot be written is one line, no traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.app.stores import open_store
from tests.e2e.conftest import World, _make_world, server

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    gen = _make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 1)
    w = next(gen)
    w.write({"tb0": [server("srv-a", env=SECRET_ENV), server("srv-b")]})
    yield w
    gen.close()


def stored_key_ids(w: World) -> set[object]:
    store = open_store(w.database_url)
    try:
        return {i.config.get("secret_key_id") for i in store.observe_instances() if i.name == "srv-a"}
    finally:
        store.close()


def test_fingerprints_made_with_another_key_plan_no_replace(world: World) -> None:
    world.extra_env["RECONCILER_SECRET_KEY"] = "key-one"
    assert world.cli("apply", str(world.manifests)).returncode == 0
    (key_id,) = stored_key_ids(world)
    assert isinstance(key_id, str) and len(key_id) == 8 and "key-one" not in key_id
    world.extra_env["RECONCILER_SECRET_KEY"] = "key-two"
    done = world.cli("plan", str(world.manifests), "--format", "json", "--detailed-exitcode")
    assert done.returncode == 1  # incomplete: srv-a cannot be compared
    plan = json.loads(done.stdout)
    assert plan["steps"] == []
    assert "fingerprints were made with another key: set RECONCILER_SECRET_KEY" in done.stderr  # json: stderr
    world.extra_env["RECONCILER_SECRET_KEY"] = "key-one"
    assert world.cli("plan", str(world.manifests), "--detailed-exitcode").returncode == 0


def test_no_key_is_made_silently_when_the_database_holds_fingerprints(world: World) -> None:
    world.extra_env["RECONCILER_SECRET_KEY"] = ""
    world.extra_env["RECONCILER_JOURNAL"] = str(world.tmp / "first" / "journal.db")
    first = world.cli("apply", str(world.manifests))
    assert first.returncode == 0, first.stderr
    assert f"made a new secret key for fingerprints at {world.tmp / 'first' / 'secret.key'}" in first.stderr
    # Another journal directory (another checkout, a CI runner): no key there, fingerprints in the database.
    world.extra_env["RECONCILER_JOURNAL"] = str(world.tmp / "second" / "journal.db")
    done = world.cli("plan", str(world.manifests))
    assert done.returncode == 1
    assert "set RECONCILER_SECRET_KEY" in done.stderr and "no new key was made" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (world.tmp / "second" / "secret.key").exists()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_a_key_that_cannot_be_written_is_one_line(world: World, where: str) -> None:
    world.extra_env["RECONCILER_SECRET_KEY"] = ""
    if where == "proc":
        journal = Path("/proc/nope/journal.db")
    else:  # a directory that cannot be made (even by root): its parent is a file
        (world.tmp / "not-a-dir").write_text("x")
        journal = world.tmp / "not-a-dir" / "journal.db"
    done = world.cli("plan", str(world.manifests), "--journal", str(journal))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(journal.parent / "secret.key") in lines[0], done.stderr
    assert "RECONCILER_SECRET_KEY" in lines[0]
