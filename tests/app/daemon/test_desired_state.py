"""The daemon's view of the manifests: re-read each cycle, last good state kept per environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from reconciler.runtime.desired_state import DesiredMemory, Loaded, load_desired


class DesiredState:
    """Threads the explicit memory from one load to the next, as the daemon does."""

    def __init__(self, paths: list[str], environ: dict[str, str]) -> None:
        self.paths, self.environ, self.memory = paths, environ, DesiredMemory()

    def load(self) -> Loaded:
        loaded, self.memory = load_desired(self.paths, self.environ, self.memory)
        return loaded


def write(folder: Path, env: str, *servers: str, secret: str | None = None) -> None:
    items = []
    for name in servers:
        item = {"name": name, "image": f"ghcr.io/acme/{name}:1.0.0", "transport": "sse"}
        if secret:
            item["env"] = {"KEY": {"secretFromEnv": secret}}
        items.append(item)
    doc = {"apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": env, "servers": items}
    (folder / f"{env}.yaml").write_text(yaml.safe_dump(doc))


def servers(state: DesiredState) -> dict[str, list[str]]:
    loaded = state.load()
    return {e.environment: [s.name for s in e.servers] for e in loaded.desired.environments}


def test_unchanged_files_reuse_the_last_load_and_changes_are_seen(tmp_path: Path) -> None:
    write(tmp_path, "tb0", "s1")
    state = DesiredState([str(tmp_path)], {})
    first = state.load()
    assert first.valid and state.load() is first  # same bytes: not parsed again
    write(tmp_path, "tb0", "s1", "s2")
    assert servers(state) == {"tb0": ["s1", "s2"]}


def test_a_broken_file_keeps_its_last_good_environment_others_move_on(tmp_path: Path) -> None:
    write(tmp_path, "tb0", "s1", "s2")
    write(tmp_path, "tb1", "s3")
    state = DesiredState([str(tmp_path)], {})
    assert state.load().valid
    (tmp_path / "tb0.yaml").write_text("environment: tb0\nservers: [\n")
    write(tmp_path, "tb1", "s3", "s4")
    loaded = state.load()
    assert not loaded.valid and loaded.kept == ("tb0",) and loaded.errors
    assert {e.environment: [s.name for s in e.servers] for e in loaded.desired.environments} == {
        "tb0": ["s1", "s2"], "tb1": ["s3", "s4"]
    }  # fmt: skip


def test_an_environment_declared_twice_keeps_its_last_good_state(tmp_path: Path) -> None:
    write(tmp_path, "tb0", "s1")
    state = DesiredState([str(tmp_path)], {})
    assert state.load().valid
    doc = yaml.safe_load((tmp_path / "tb0.yaml").read_text())
    doc["servers"] = []
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(doc))
    loaded = state.load()
    assert not loaded.valid and any("declared twice" in e for e in loaded.errors)
    assert [(e.environment, len(e.servers)) for e in loaded.desired.environments] == [("tb0", 1)]


def test_a_missing_secret_keeps_that_environment_on_its_last_good_state(tmp_path: Path) -> None:
    write(tmp_path, "tb0", "s1")
    write(tmp_path, "tb1", "s3")
    state = DesiredState([str(tmp_path)], {"TOKEN_A": "value-a"})
    assert state.load().valid
    write(tmp_path, "tb0", "s1", "s2", secret="TOKEN_B")  # not set in the environment
    write(tmp_path, "tb1", "s3", secret="TOKEN_A")
    loaded = state.load()
    assert not loaded.valid and any("TOKEN_B" in e for e in loaded.errors)
    assert {e.environment: [s.name for s in e.servers] for e in loaded.desired.environments} == {
        "tb0": ["s1"], "tb1": ["s3"]
    }  # fmt: skip
    assert loaded.secret_values == {"TOKEN_A": "value-a"}


def test_nothing_good_yet_means_nothing_to_act_on(tmp_path: Path) -> None:
    (tmp_path / "tb0.yaml").write_text("environment: tb0\n")
    loaded = DesiredState([str(tmp_path)], {}).load()
    assert not loaded.valid and loaded.desired.environments == ()


class Stamped(DesiredState):
    """Loads that trust the files' stat at once (``settle=0``), as they do once the files have settled."""

    def load(self) -> Loaded:
        loaded, self.memory = load_desired(self.paths, self.environ, self.memory, settle=0.0)
        return loaded


def fresh(paths: list[str]) -> dict[str, list[str]]:
    return servers(DesiredState(paths, {}))


def _changes(root: Path, elsewhere: Path) -> dict[str, Callable[[], None]]:
    """Each way the manifests under ``root`` can change (every write changes a file's size: within one tick of
    the file system's clock a same-size write can look unchanged, which the settle time is there for)."""
    sub = root / "team"

    def repoint() -> None:
        (root / "link.yaml").unlink()
        (root / "link.yaml").symlink_to(elsewhere / "other.yaml")

    return {
        "content": lambda: write(root, "tb0", "s1", "s2"),
        "added": lambda: write(root, "tb9", "s9"),
        "removed": lambda: (root / "tb1.yaml").unlink(),
        "renamed": lambda: (root / "tb1.yaml").rename(root / "tb1.yml.txt"),
        "in a subdirectory": lambda: write(sub, "tb2", "s2", "s3"),
        "added in a subdirectory": lambda: write(sub, "tb3", "s3"),
        "removed from a subdirectory": lambda: (sub / "tb2.yaml").unlink(),
        "new subdirectory": lambda: (root / "more").mkdir() or write(root / "more", "tb7", "s7"),
        "link target": lambda: write(elsewhere, "tb5", "s5", "s6"),
        "link repointed": repoint,
        "dangling link resolves": lambda: write(elsewhere, "tb6", "s6"),
    }


@pytest.mark.parametrize("change", sorted(_changes(Path(), Path())))
def test_a_stamped_tree_is_not_read_again_until_a_change_which_is_always_seen(tmp_path: Path, change: str) -> None:
    root, elsewhere = tmp_path / "manifests", tmp_path / "elsewhere"
    (root / "team").mkdir(parents=True)
    elsewhere.mkdir()
    write(root, "tb0", "s1")
    write(root, "tb1", "s1")
    write(root / "team", "tb2", "s2")
    write(elsewhere, "tb5", "s5")
    (root / "link.yaml").symlink_to(elsewhere / "tb5.yaml")
    (root / "dangling.yaml").symlink_to(elsewhere / "tb6.yaml")  # not there yet: not a manifest
    write(elsewhere, "other", "s8")
    state = Stamped([str(root)], {})
    first = state.load()
    assert first.valid and state.memory.stamp is not None
    assert state.load() is first  # stamped: the same load, without reading the files
    _changes(root, elsewhere)[change]()
    assert servers(state) == fresh([str(root)]) != {e.environment: [s.name for s in e.servers]
                                                     for e in first.desired.environments}  # fmt: skip


def test_a_file_named_directly_is_stamped_too(tmp_path: Path) -> None:
    write(tmp_path, "tb0", "s1")
    state = Stamped([str(tmp_path / "tb0.yaml")], {})
    first = state.load()
    assert state.memory.stamp is not None and state.load() is first
    write(tmp_path, "tb0", "s1", "s2")
    assert servers(state) == {"tb0": ["s1", "s2"]}


def test_files_that_changed_within_the_settle_time_are_read_every_cycle(tmp_path: Path) -> None:
    write(tmp_path, "tb0", "s1")
    state = DesiredState([str(tmp_path)], {})  # the daemon's settle time: the files were just written
    first = state.load()
    assert first.valid and state.memory.stamp is None
    assert state.load() is first  # the bytes are read and are the same: the same load


def test_what_the_loader_does_not_read_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    write(tmp_path, "tb0", "s1")
    state = Stamped([str(tmp_path)], {})
    first = state.load()
    write(tmp_path / ".git", "tb9", "s9")  # a dot directory is not read
    (tmp_path / "README.md").write_text("notes\n")
    assert state.load() is first


def test_other_paths_are_another_tree(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", "tb0", "s1")
    write(tmp_path / "b", "tb1", "s2")
    state = Stamped([str(tmp_path / "a")], {})
    assert servers(state) == {"tb0": ["s1"]} and state.memory.stamp is not None
    state.paths = [str(tmp_path / "b")]
    assert servers(state) == {"tb1": ["s2"]}
    state.paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert servers(state) == {"tb0": ["s1"], "tb1": ["s2"]}
