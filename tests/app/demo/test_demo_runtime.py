"""The demo's parts in-process: token handling, the per-directory lock, the loopback layout, stand-in secrets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.adapters.journal import Journal
from reconciler.app.demo import (
    DemoConfig,
    demo_lock,
    demo_secret_values,
    examples_dir,
    run_demo,
    start_simulators,
)
from reconciler.app.stores import open_store
from reconciler.errors import ConfigError
from reconciler.model.loader import load_manifests

TOKEN = "TOKEN-CANARY-0f9e8d7c6b5a"


def test_once_in_process_shares_the_token_and_never_shows_it(tmp_path: Path) -> None:
    lines: list[str] = []
    code = run_demo(
        DemoConfig(directory=tmp_path, once=True),
        echo=lines.append,
        environ={"GITHUB_TOKEN": "gh-canary-1", "CONTEXT7_API_KEY": "c7-canary-2"},
        token=TOKEN,
    )
    assert code == 0, lines
    assert "demo finished: steps 8 ok" in lines
    assert not any("demo values for unset secrets" in line for line in lines)  # both were given
    journal = Journal(tmp_path / "journal.db")
    try:
        [run] = journal.runs()
        assert run.outcome == "converged"
        assert len(journal.steps(run_id=run.id)) == 8
    finally:
        journal.close()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        names = sorted(e.name for e in store.list_environments())
    finally:
        store.close()
    assert names == ["coding-toolbox", "research-toolbox"]
    for text in ["\n".join(lines), *(p.read_bytes().decode("latin-1") for p in tmp_path.iterdir() if p.is_file())]:
        for secret in (TOKEN, "gh-canary-1", "c7-canary-2"):
            assert secret not in text


def test_a_second_demo_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with demo_lock(tmp_path), pytest.raises(ConfigError, match="another `reconciler demo` is running"):
        run_demo(DemoConfig(directory=tmp_path, once=True), echo=lambda _: None, environ={})
    assert not (tmp_path / "state.db").exists()  # refused before touching the state


def test_toolboxes_share_one_port_and_fall_back_to_the_next_loopback_address() -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.2", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        sims = start_simulators(2, TOKEN, port=port, second_hosts=("127.0.0.{n}", "127.0.0.9"))
        try:
            assert [a for s in sims for a in s.addresses] == [f"127.0.0.1:{port}", f"127.0.0.9:{port}"]
        finally:
            for sim in sims:
                sim.stop()


def test_no_free_address_is_a_clear_error() -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.2", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ConfigError, match=r"cannot start the demo's simulated toolboxes: .*127\.0\.0\.2"):
            start_simulators(2, TOKEN, port=port, second_hosts=("127.0.0.{n}",))


def test_stand_ins_only_for_the_secrets_the_examples_use_and_the_environment_lacks() -> None:
    desired = load_manifests([examples_dir()])
    assert set(demo_secret_values(desired, {})) == {"CONTEXT7_API_KEY", "GITHUB_TOKEN"}
    made = demo_secret_values(desired, {"GITHUB_TOKEN": "set"})
    assert list(made) == ["CONTEXT7_API_KEY"]
    assert made["CONTEXT7_API_KEY"] != demo_secret_values(desired, {})["CONTEXT7_API_KEY"]  # random


def test_an_incomplete_cycle_is_never_called_in_sync() -> None:
    from reconciler.app.demo import describe_plan
    from reconciler.core.plan import Notice, NoticeKind, Plan

    unseen = Plan(steps=(), notices=(Notice("e", "tb", None, NoticeKind.UNREACHABLE, "connection refused"),))
    head, *notes = describe_plan(unseen, complete=False)
    assert "in sync" not in head and head.startswith("incomplete")
    assert any("connection refused" in n for n in notes)
    assert describe_plan(Plan(steps=()))[0] == "in sync, nothing to do"
