"""``plan`` starts listing the toolboxes its manifests most likely declare before it loads them: each toolbox
is still listed exactly once, a toolbox no hint named is listed by the cycle, and ``--env`` is respected."""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.app.reconcile import reconcile_once
from reconciler.model.loader import environment_hints
from reconciler.model.secrets import Secret
from reconciler.settings import Settings
from tests.sim_helpers import running_simulator

LISTINGS = ("GET /tools/status", "GET /status")


def _server(name: str) -> dict[str, object]:
    return {"name": name, "image": f"ghcr.io/acme/{name}:1.0.0", "transport": "sse", "port": 8080}


def _manifests(folder: Path) -> Path:
    folder.mkdir()
    block = {
        "apiVersion": "mcp-reconciler/v1",
        "kind": "Toolbox",
        "environment": "tb0",
        "servers": [_server("aa")],
    }
    (folder / "tb0.yaml").write_text(yaml.safe_dump(block, sort_keys=False))
    # Flow style: no `environment:` line to find, so no hint; the cycle lists it.
    (folder / "tb1.yaml").write_text(
        "{apiVersion: mcp-reconciler/v1, kind: Toolbox, environment: tb1, servers: [{name: bb, "
        'image: "ghcr.io/acme/bb:1.0.0", transport: sse, port: 8080}]}\n'
    )
    (folder / "tb2.yaml").write_text(
        "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: 'tb2'  # quoted, with a comment\nservers: []\n"
        "policy:\n  allowEmpty: true\n"
    )
    return folder


def test_hints_are_the_top_level_environment_lines(tmp_path: Path) -> None:
    assert environment_hints([str(_manifests(tmp_path / "m"))]) == {"tb0", "tb2"}


def _listings(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k in LISTINGS)


def test_plan_lists_every_toolbox_once_whether_hinted_or_not(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path / "m")
    with running_simulator(toolboxes=3, per="address", host="127.61.0.1") as sim:
        store = SqliteStore(tmp_path / "state.db", create=True)
        for i in range(3):
            store.add_environment(f"tb{i}", sim.addresses[i].rsplit(":", 1)[0])
        store.close()
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'state.db'}",
            journal_path=str(tmp_path / "journal.db"),
            dtma_port=int(sim.addresses[0].rsplit(":", 1)[1]),
            dtma_token=Secret(sim.token),
            secret_key=Secret("k"),
        )
        report = reconcile_once(settings, [str(manifests)], apply=False)
        assert sorted((s.environment_name, s.server, str(s.action)) for s in report.plan.steps) == [
            ("tb0", "aa", "create"),
            ("tb1", "bb", "create"),
        ]
        assert not report.verdict.gaps
        assert [_listings(sim.counters(i)) for i in range(3)] == [1, 1, 1]

        # --env: only what is in scope is listed, hinted or not.
        reconcile_once(settings, [str(manifests)], apply=False, env_filter=["tb1"])
        assert [_listings(sim.counters(i)) for i in range(3)] == [1, 2, 1]
