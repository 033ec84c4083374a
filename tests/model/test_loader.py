"""Loading valid manifests: the dataclasses built, sources, documents, directories, digest, limits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.errors import ManifestError
from reconciler.model.loader import MAX_FILE_BYTES, load_manifests
from reconciler.model.spec import EnvironmentPolicy, SecretRef, ServerSpec, SourceRef

FULL = """\
# a comment first
apiVersion: mcp-reconciler/v1
kind: Toolbox
environment: research-toolbox
policy:
  prune: true
  allowEmpty: false
servers:
  - name: context7
    image: ghcr.io/upstash/context7-mcp:1.0.6
    transport: streamable-http
    endpoint: /mcp
    port: 8080
    hostPort: 31001
    capabilities: [tools, resources]
    state: running
    protect: true
    env:
      LOG_LEVEL: info
      API_KEY: { secretFromEnv: CONTEXT7_API_KEY }
  - name: fetch
    image: mcp/fetch
    transport: stdio
    state: stopped
"""


def doc(environment: str, *servers: str) -> str:
    body = "".join(f"  - {{name: {s}, image: 'mcp/{s}:1', transport: stdio}}\n" for s in servers)
    return f"apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: {environment}\nservers:\n{body}" + (
        "" if servers else "  []\n"
    )


def test_full_document_builds_every_field(tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(FULL)
    desired = load_manifests([path])
    (env,) = desired.environments
    assert env.environment == "research-toolbox"
    assert env.policy == EnvironmentPolicy(prune=True, allow_empty=False)
    assert env.source == SourceRef(str(path), 2, 1)
    context7, fetch = env.servers
    assert context7 == ServerSpec(
        name="context7",
        image="ghcr.io/upstash/context7-mcp:1.0.6",
        transport="streamable-http",
        endpoint="/mcp",
        port=8080,
        host_port=31001,
        capabilities=("tools", "resources"),
        state="running",
        env=(("LOG_LEVEL", "info"), ("API_KEY", SecretRef("CONTEXT7_API_KEY"))),
        protect=True,
    )
    assert context7.source == SourceRef(str(path), 9, 5)
    assert dict(context7.secret_refs)["API_KEY"].source == SourceRef(str(path), 20, 18)
    assert fetch == ServerSpec(name="fetch", image="mcp/fetch", transport="stdio", state="stopped")
    assert fetch.source.line == 21
    assert desired.files == (str(path),)
    assert desired.digest.startswith("sha256:") and len(desired.digest) == 71


def test_defaults_when_optional_fields_are_absent(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(doc("tb", "aa"))
    (env,) = load_manifests([tmp_path / "m.yaml"]).environments
    assert env.policy == EnvironmentPolicy(prune=False, allow_empty=False)
    (srv,) = env.servers
    assert (srv.state, srv.protect, srv.env, srv.capabilities, srv.port) == ("running", False, (), (), None)


def test_several_documents_in_one_file_keep_their_order_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(doc("one", "aa") + "---\n" + doc("two", "bb", "cc") + "---\n" + doc("three"))
    desired = load_manifests([path])
    assert [e.environment for e in desired.environments] == ["one", "two", "three"]
    assert [e.source.line for e in desired.environments] == [1, 7, 14]
    assert [s.name for s in desired.environments[1].servers] == ["bb", "cc"]
    assert desired.environments[1].servers[1].source == SourceRef(str(path), 12, 5)


def test_empty_documents_between_separators_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("---\n---\n" + doc("one", "aa") + "---\n# nothing\n")
    assert [e.environment for e in load_manifests([path]).environments] == ["one"]


def test_directory_is_read_in_sorted_order_yaml_and_yml_only(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(doc("b-env", "aa"))
    (tmp_path / "a.yaml").write_text(doc("a-env", "aa"))
    (tmp_path / "c.yaml").write_text(doc("c-env", "aa"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / ".hidden.yaml").write_text("broken: [")
    for hidden in (".git", ".reconciler"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "z.yaml").write_text("broken: [")
    desired = load_manifests([tmp_path])
    assert [e.environment for e in desired.environments] == ["a-env", "b-env", "c-env"]
    assert desired.files == tuple(str(tmp_path / n) for n in ("a.yaml", "b.yml", "c.yaml"))


def test_subdirectories_are_read_one_per_environment(tmp_path: Path) -> None:
    (tmp_path / "research").mkdir()
    (tmp_path / "research" / "toolbox.yaml").write_text(doc("research", "aa"))
    (tmp_path / "coding" / "extra").mkdir(parents=True)
    (tmp_path / "coding" / "extra" / "toolbox.yml").write_text(doc("coding", "aa"))
    (tmp_path / "z.yaml").write_text(doc("zeta", "aa"))
    desired = load_manifests([tmp_path])
    assert [e.environment for e in desired.environments] == ["coding", "research", "zeta"]
    assert desired.files == tuple(
        str(tmp_path / n) for n in ("coding/extra/toolbox.yml", "research/toolbox.yaml", "z.yaml")
    )
    # The digest names files relative to the directory given: another checkout gives the same digest.
    other = tmp_path.parent / (tmp_path.name + "-copy")
    shutil.copytree(tmp_path, other)
    assert load_manifests([other]).digest == desired.digest
    (other / "research" / "toolbox.yaml").rename(other / "research" / "renamed.yaml")
    assert load_manifests([other]).digest != desired.digest


def test_yaml_that_is_not_a_manifest_is_skipped_in_a_directory_but_not_when_named(tmp_path: Path) -> None:
    (tmp_path / "research.yaml").write_text(doc("research", "aa"))
    (tmp_path / "ci").mkdir()
    workflow = tmp_path / "ci" / "plan.yml"
    workflow.write_text("name: plan\non: [pull_request]\njobs: {}\n")
    (tmp_path / "compose.yaml").write_text("services: {}\n---\nversion: 3\n")
    desired = load_manifests([tmp_path])
    assert desired.files == (str(tmp_path / "research.yaml"),)
    assert desired.skipped == (str(workflow), str(tmp_path / "compose.yaml"))
    with pytest.raises(ManifestError):
        load_manifests([workflow])
    # A manifest with a typo still holds manifest keys: it is checked, not skipped.
    (tmp_path / "ci" / "typo.yaml").write_text("apiVersoin: mcp-reconciler/v1\nkind: Toolbox\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    assert {i.file for i in caught.value.issues} == {str(tmp_path / "ci" / "typo.yaml")}


def test_a_broken_file_in_a_subdirectory_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "research").mkdir()
    (tmp_path / "research" / "toolbox.yaml").write_text("apiVersion: v1\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    assert {i.file for i in caught.value.issues} == {str(tmp_path / "research" / "toolbox.yaml")}


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(doc("a-env", "aa"))
    desired = load_manifests([tmp_path, tmp_path / "a.yaml", str(tmp_path / "a.yaml")])
    assert [e.environment for e in desired.environments] == ["a-env"]


def test_digest_is_stable_and_follows_content_and_names(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for d in (first, second):
        d.mkdir()
        (d / "a.yaml").write_text(doc("a-env", "aa"))
        (d / "b.yaml").write_text(doc("b-env", "bb"))
    digest = load_manifests([first]).digest
    assert load_manifests([first]).digest == digest
    assert load_manifests([second]).digest == digest  # another checkout of the same files
    old_cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert load_manifests(["./first/"]).digest == digest
    finally:
        os.chdir(old_cwd)
    (second / "b.yaml").write_text(doc("b-env", "bb") + "# a comment changes the bytes\n")
    assert load_manifests([second]).digest != digest
    (second / "b.yaml").rename(second / "c.yaml")
    (second / "c.yaml").write_text(doc("b-env", "bb"))
    assert load_manifests([second]).digest != digest


def test_the_same_environment_in_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(doc("shared", "aa"))
    (tmp_path / "b.yaml").write_text("# header\n" + doc("shared", "bb"))
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    (issue,) = caught.value.issues
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert str(issue) == (f"{b}:4:14: environment: environment 'shared' is declared twice: at {a}:3 and at {b}:4")


def test_environment_ids_match_whatever_their_case(tmp_path: Path) -> None:
    uid = "6f1c2e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    (tmp_path / "m.yaml").write_text(doc(uid, "aa") + "---\n" + doc(uid.upper(), "bb"))
    with pytest.raises(ManifestError, match="is declared twice"):
        load_manifests([tmp_path])


def test_anchors_and_aliases_are_expanded(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\nservers:\n"
        "  - name: aa\n    image: mcp/a:1\n    transport: stdio\n    env: &common\n      LOG_LEVEL: debug\n"
        "  - name: bb\n    image: mcp/b:1\n    transport: stdio\n    env: *common\n"
    )
    (env,) = load_manifests([path]).environments
    assert [s.env for s in env.servers] == [(("LOG_LEVEL", "debug"),)] * 2


def test_alias_bombs_are_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match="aliases expand to more than 1000000 values"):
        load_manifests([path])


def test_deep_nesting_is_refused_without_crashing(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("servers: " + "[" * 200_000 + "]" * 200_000 + "\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert [i.message for i in caught.value.issues] == ["nesting deeper than 64 levels"]


def test_files_over_ten_megabytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(doc("tb", "aa").encode() + b"#" * MAX_FILE_BYTES)
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:1:1: $: file is larger than 10 MB; split it into several files"
    ]


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(doc("tb", "aa").encode() + b"# caf\xe9\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert [str(i) for i in caught.value.issues] == [f"{path}:6:6: $: not valid UTF-8 (byte 0xe9)"]


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + doc("tb", "aa").encode())
    assert load_manifests([path]).environments[0].environment == "tb"


def test_missing_paths_and_empty_directories_are_issues(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path / "nope.yaml", tmp_path / "empty"])
    # No made-up 1:1 position: a directory or a missing path has no line.
    assert [str(i) for i in caught.value.issues] == [
        f"{tmp_path / 'empty'}: directory holds no *.yaml or *.yml file, nor do its subdirectories",
        f"{tmp_path / 'nope.yaml'}: no such file or directory",
    ]


def test_integral_float_ports_become_ints(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        doc("tb").replace(
            "servers:\n  []\n",
            "servers:\n  - {name: aa, image: 'a:1', transport: sse, port: 8080.0, hostPort: 31000}\n",
        )
    )
    (srv,) = load_manifests([path]).environments[0].servers
    assert (srv.port, srv.host_port) == (8080, 31000)
    assert type(srv.port) is int


def test_control_characters_in_keys_cannot_break_the_one_line_format(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(doc("tb", "aa") + '"evil\\nkey": 1\n')
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    (issue,) = caught.value.issues
    assert "\n" not in str(issue)
    assert issue.message == "unknown key 'evil\\nkey'; allowed: apiVersion, environment, kind, policy, servers"


def test_values_under_env_are_never_echoed(tmp_path: Path) -> None:
    canary = "CANARY-0123456789abcdef"
    path = tmp_path / "m.yaml"
    path.write_text(
        doc("tb").replace(
            "servers:\n  []\n",
            "servers:\n  - name: aa\n    image: a:1\n    transport: sse\n    env:\n"
            f"      TOKEN: [{canary}]\n      OTHER: {{secretFromEnv: '{canary}'}}\n",
        )
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert len(caught.value.issues) == 2
    assert canary not in str(caught.value)


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, enabled: bool) -> None:
    import gc

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(doc("tb", "aa"))
    bad.write_text("kind: [\n")
    before = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        load_manifests([good])
        assert gc.isenabled() is enabled
        with pytest.raises(ManifestError):
            load_manifests([bad])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if before else gc.disable)()


def test_a_read_ahead_loads_as_reading_the_files_again(tmp_path: Path) -> None:
    from reconciler.model.loader import read_ahead

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(doc("tb1", "aa", "bb"))
    (folder / "b.yaml").write_text(doc("tb2", "cc"))
    (folder / "ci.yml").write_text("on: push\njobs: {}\n")  # skipped: not a manifest
    paths = [str(folder)]
    ahead = read_ahead(paths)
    assert ahead.environment_hints() == {"tb1", "tb2"}
    assert load_manifests(paths, read=ahead) == load_manifests(paths)
    # A read-ahead of other paths is not used.
    assert load_manifests([folder / "b.yaml"], read=ahead) == load_manifests([folder / "b.yaml"])

    (folder / "c.yaml").write_text(doc("tb1", "dd") + "  - kind: [\n")
    (folder / "d.yaml").write_bytes(b"kind: \xff\n")
    ahead = read_ahead([*paths, str(tmp_path / "missing.yaml")])
    with pytest.raises(ManifestError) as fresh:
        load_manifests([*paths, str(tmp_path / "missing.yaml")])
    with pytest.raises(ManifestError) as reused:
        load_manifests([*paths, str(tmp_path / "missing.yaml")], read=ahead)
    assert [str(i) for i in reused.value.issues] == [str(i) for i in fresh.value.issues]
    assert len(fresh.value.issues) >= 3


def _manifest_files_as_before(paths: list[str]) -> tuple[list[tuple[str, str, str, bool]], list[str]]:
    """The file search as it was written with pathlib (os.walk, Path.is_file, a stat per file, sorted by
    parts): the reference the faster search must match."""
    found_files: list[tuple[str, str, str, bool]] = []
    issues: list[str] = []
    seen: set[tuple[int, int]] = set()

    def add(path: Path, display: str, digest_name: str, found: bool = False) -> None:
        info = path.stat()
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            found_files.append((str(path), display, digest_name, found))

    for given in paths:
        path = Path(given)
        if path.is_dir():
            entries: list[Path] = []
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in names:
                    child = Path(root) / name
                    if child.suffix in (".yaml", ".yml") and not name.startswith(".") and child.is_file():
                        entries.append(child.relative_to(path))
            entries.sort(key=lambda p: p.parts)
            if not entries:
                issues.append(f"{given}: empty")
            for relative in entries:
                add(path / relative, str(path / relative), relative.as_posix(), found=True)
        elif path.is_file():
            add(path, given, path.name)
        else:
            issues.append(f"{given}: missing")
    return found_files, issues


def test_the_file_search_finds_what_the_pathlib_search_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.model.loader import manifest_files

    root = tmp_path / "m"
    names = ["a.yaml", "b.yml", "c.YAML", "d.yaml.", ".e.yaml", "f.txt", "g.tar.yaml", "sub/h.yaml",
             "sub/deeper/i.yml", "sub-a/j.yaml", "sub.b/k.yaml", ".git/l.yaml", "x/.hidden/m.yaml",
             "empty/"]  # fmt: skip
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith("/"):
            target.write_text(doc("tb", "aa"))
    (root / "link.yaml").symlink_to(root / "a.yaml")  # the same file twice: read once
    (root / "dangling.yaml").symlink_to(root / "nowhere.yaml")
    (root / "dir.yaml").mkdir()
    (root / "linked-dir").symlink_to(root / "sub", target_is_directory=True)  # not followed
    monkeypatch.chdir(tmp_path)
    for paths in (["m"], ["m/"], ["./m", "m/sub"], [str(root)], ["m/a.yaml", "m"], ["m/sub/h.yaml"],
                  ["m/missing.yaml", "m/empty", "m/f.txt"], ["."]):  # fmt: skip
        files, issues = manifest_files(paths)
        expected_files, expected_issues = _manifest_files_as_before(paths)
        assert [(str(f.path), f.display, f.digest_name, f.found) for f in files] == expected_files, paths
        assert [f"{i.file}: {'empty' if 'holds no' in i.message else 'missing'}" for i in issues] == (
            expected_issues
        ), paths


def test_a_file_is_read_whole_up_to_the_size_limit(tmp_path: Path) -> None:
    from reconciler.model.loader import ManifestFile, _read

    for size in (0, 1, 4096, MAX_FILE_BYTES, MAX_FILE_BYTES + 1, MAX_FILE_BYTES + 5000):
        path = tmp_path / f"f{size}.yaml"
        path.write_bytes(b"x" * size)
        raw, problem = _read(ManifestFile(path, str(path), path.name))
        if size <= MAX_FILE_BYTES:
            assert raw is not None and len(raw) == size and problem is None
        else:
            assert raw is None and problem is not None and "larger than 10 MB" in problem.message
