"""The daemon's view of the manifests: re-read each cycle, last good state kept per environment."""

from __future__ import annotations

from pathlib import Path

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
