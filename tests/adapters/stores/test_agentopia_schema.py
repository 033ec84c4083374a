"""PostgreSQL only: Agentopia's own schema as its pg_dump has it, which the reconciler must not trip on.

``agentopia_schema`` rebuilds the parts that matter from that dump: no marker and no migrations table (so
the reconciler never migrates it), ``is_public boolean DEFAULT true`` and no ``created_by`` on the catalog,
the MCP CHECK constraints with Agentopia's exact texts (``chk_mcp_server_required_fields`` among them), and
``port_mapping_json``'s documented comment. The last test drives the real command against the simulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.store_rows import McpRules
from reconciler.app.stores import migrate_database
from tests.sim_helpers import running_simulator

from .conftest import Backend
from .helpers import new_instance, server

pytestmark = pytest.mark.postgres

AGENTOPIA_CHECKS = {
    "account_tool_instances_mcp_server_type_check": "((mcp_server_type IS NULL) OR (mcp_server_type = ANY "
    "(ARRAY['standard_tool'::text, 'mcp_server'::text])))",
    "account_tool_instances_mcp_transport_type_check": "((mcp_transport_type IS NULL) OR (mcp_transport_type = "
    "ANY (ARRAY['stdio'::text, 'sse'::text, 'websocket'::text])))",
    "chk_mcp_server_required_fields": "((mcp_server_type IS NULL) OR (mcp_server_type = 'standard_tool'::text) "
    "OR ((mcp_server_type = 'mcp_server'::text) AND (mcp_transport_type IS NOT NULL)))",
}
PORT_COMMENT = 'Port mapping for the tool instance container, e.g., {"container_port": 8080, "host_port": 49152}.'


def agentopia_schema(backend: Backend, checks: dict[str, str] = AGENTOPIA_CHECKS) -> None:
    migrate_database(backend.url)
    for sql in (
        "DROP TABLE mcp_reconciler_meta",
        "DROP TABLE schema_migrations",
        "ALTER TABLE tool_catalog DROP COLUMN created_by",
        "ALTER TABLE tool_catalog ALTER COLUMN is_public DROP NOT NULL",
        *(f"ALTER TABLE account_tool_instances DROP CONSTRAINT IF EXISTS {name}" for name in AGENTOPIA_CHECKS),
        *(f"ALTER TABLE account_tool_instances ADD CONSTRAINT {n} CHECK {c}" for n, c in checks.items()),
        f"COMMENT ON COLUMN account_tool_instances.port_mapping_json IS '{PORT_COMMENT}'",
    ):
        backend.raw(sql)


def _env(backend: Backend, name: str, address: str, token: str | None = None) -> tuple[str, str]:
    env_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    backend.raw(
        "INSERT INTO account_tool_environments (id, user_id, name, public_ip_address, status, region_slug, "
        "size_slug, image_slug, dtma_bearer_token) VALUES (?, ?, ?, ?, 'active', 'nyc3', 's-1vcpu', 'ubuntu', ?)",
        [env_id, user_id, name, address, token],
    )
    return env_id, user_id


def test_the_store_reads_the_check_constraints_and_writes_a_combination_they_accept(pg_backend: Backend) -> None:
    agentopia_schema(pg_backend)
    store = pg_backend.open()
    assert store.is_agentopia_database
    assert store.mcp_rules == McpRules(
        transports=frozenset({"stdio", "sse", "websocket"}),
        server_types=frozenset({"standard_tool", "mcp_server"}),
        required=frozenset({"mcp_transport_type"}),
    )
    env_id, _ = _env(pg_backend, "prod-1", "10.9.8.7")
    written = {}
    for transport in ("streamable-http", "stdio", "sse", "websocket"):
        spec = server(f"s-{transport}", f"ghcr.io/acme/{transport}:1", transport=transport)
        iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
        [(kind, column)] = pg_backend.raw(
            "SELECT mcp_server_type, mcp_transport_type FROM account_tool_instances WHERE id = ?", [iid]
        )
        written[transport] = (kind, column)
    assert written == {
        "streamable-http": ("mcp_server", "sse"), "stdio": ("mcp_server", "stdio"),
        "sse": ("mcp_server", "sse"), "websocket": ("mcp_server", "websocket"),
    }  # fmt: skip
    assert {i.config["mcp"]["transport"] for i in store.observe().instances} == set(written)


def test_a_check_that_accepts_streamable_http_gets_it_and_one_with_no_mcp_value_gets_a_standard_tool(
    pg_backend: Backend,
) -> None:
    wider = dict(AGENTOPIA_CHECKS)
    wider["account_tool_instances_mcp_transport_type_check"] = (
        "(mcp_transport_type IN ('stdio', 'sse', 'websocket', 'streamable-http'))"
    )
    agentopia_schema(pg_backend, wider)
    store = pg_backend.open()
    env_id, _ = _env(pg_backend, "prod-1", "10.9.8.7")
    spec = server("web", "ghcr.io/acme/web:1", transport="streamable-http")
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    assert pg_backend.raw("SELECT mcp_transport_type FROM account_tool_instances WHERE id = ?", [iid]) == [
        ("streamable-http",)
    ]
    narrow = McpRules(transports=frozenset({"stdio"}), required=frozenset({"mcp_transport_type"}))
    from reconciler.adapters.store_rows import mcp_values

    values = mcp_values({"mcp": {"transport": "websocket", "endpoint": "/ws", "capabilities": []}}, narrow)
    assert values["mcp_server_type"] == "standard_tool" and values["mcp_transport_type"] is None
    assert values["mcp_discovery_metadata"]["transport"] == "websocket"


def test_catalog_rows_are_private_where_created_by_does_not_exist(pg_backend: Backend) -> None:
    agentopia_schema(pg_backend)
    store = pg_backend.open()
    env_id, _ = _env(pg_backend, "prod-1", "10.9.8.7")
    catalog = store.ensure_catalog("ghcr.io/acme/x:1", environment_id=env_id)
    assert pg_backend.raw("SELECT is_public FROM tool_catalog WHERE id = ?", [catalog]) == [(False,)]


TOKEN = "backend-to-dtma-key-7a6b5c"


def _cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _manifest(path: Path, servers: list[dict[str, Any]], *, prune: bool = False) -> None:
    doc = {
        "apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": "prod-1",
        "policy": {"prune": prune, "allowEmpty": True}, "servers": servers,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _servers(version: str) -> list[dict[str, Any]]:
    return [
        {"name": "web", "image": f"ghcr.io/acme/web:{version}", "transport": "streamable-http",
         "endpoint": "/mcp", "port": 8080, "hostPort": 31001},
        {"name": "local", "image": f"ghcr.io/acme/local:{version}", "transport": "stdio"},
        {"name": "keyed", "image": f"ghcr.io/acme/keyed:{version}", "transport": "sse", "endpoint": "/sse",
         "port": 8081, "env": {"API_KEY": {"secretFromEnv": "KEYED_SECRET"}}},
    ]  # fmt: skip


def test_create_bump_and_prune_on_agentopias_schema_through_the_cli(pg_backend: Backend, tmp_path: Path) -> None:
    agentopia_schema(pg_backend)
    secret = "CANARY-agentopia-schema-1f2e3d"
    with running_simulator(toolboxes=1, token=TOKEN, per="address", host="127.0.0.1") as sim:
        address, port = sim.addresses[0].rsplit(":", 1)
        # The row's token is the agent's token toward the backend: calling the agent with it would be refused.
        env_id, _ = _env(pg_backend, "prod-1", address, token="agent-to-backend-token-not-the-key")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DTMA_", "BACKEND_TO"))}
        env.update({
            "RECONCILER_DATABASE_URL": pg_backend.url, "RECONCILER_JOURNAL": str(tmp_path / "journal.db"),
            "RECONCILER_SECRET_KEY": "agentopia-schema-key", "BACKEND_TO_DTMA_API_KEY": TOKEN, "DTMA_PORT": port,
            "KEYED_SECRET": secret, "NO_COLOR": "1",
        })  # fmt: skip
        manifest = tmp_path / "prod-1.yaml"

        def apply(*extra: str) -> None:
            done = _cli(tmp_path, env, "apply", str(manifest), *extra)
            assert done.returncode == 0, done.stdout + done.stderr
            assert secret not in done.stdout + done.stderr
            again = _cli(tmp_path, env, "plan", str(manifest), "--detailed-exitcode")
            assert again.returncode == 0, again.stdout + again.stderr

        def instances() -> dict[str, dict[str, Any]]:
            found = pg_backend.raw(
                "SELECT i.instance_name_on_toolbox, i.mcp_server_type, i.mcp_transport_type, i.port_mapping_json, "
                "i.version, c.docker_image_url, c.is_public, i.last_heartbeat_from_dtma IS NOT NULL "
                "FROM account_tool_instances i JOIN tool_catalog c ON c.id = i.tool_catalog_id "
                "WHERE i.account_tool_environment_id = ?",
                [env_id],
            )
            keys = ("type", "transport", "ports", "version", "catalog_image", "public", "beaten")
            return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in found}

        _manifest(manifest, _servers("1.0.0"))
        apply()
        rows = instances()
        assert rows["web"] == {
            "type": "mcp_server", "transport": "sse", "ports": {"container_port": 8080, "host_port": 31001},
            "version": "1.0.0", "catalog_image": "ghcr.io/acme/web:1.0.0", "public": False, "beaten": False,
        }  # fmt: skip
        assert rows["local"]["transport"] == "stdio" and rows["local"]["ports"] is None
        assert rows["keyed"]["ports"] == {"container_port": 8081, "host_port": None}
        assert f"API_KEY={secret}" in sim.sim.env_of(0, "keyed")

        _manifest(manifest, _servers("2.0.0"))
        apply("--allow-mass-delete", "bumping every image")
        rows = instances()
        # Each row now points at its new image's catalog row, which is private too.
        assert {n: (r["catalog_image"], r["version"], r["public"]) for n, r in rows.items()} == {
            n: (f"ghcr.io/acme/{n}:2.0.0", "2.0.0", False) for n in ("web", "local", "keyed")
        }
        assert all(r["beaten"] for r in rows.values())  # the listing before the bump beat every row
        assert {c["image"] for c in sim.admin(0, "GET", "/__sim/state")["containers"] if c["managed"]} == {
            f"ghcr.io/acme/{n}:2.0.0" for n in ("web", "local", "keyed")
        }

        _manifest(manifest, [], prune=True)
        apply("--allow-mass-delete", "retiring the test toolbox")
        assert instances() == {}
        assert not [c for c in sim.admin(0, "GET", "/__sim/state")["containers"] if c["managed"]]

        answers = sim.sim.answers(0)
        assert not [k for k in answers if k.endswith((" 401", " 403"))], answers
        mine = pg_backend.raw(
            "SELECT is_public FROM tool_catalog WHERE version_info->>'managed_by' = 'mcp-reconciler'"
        )
        assert mine == [(False,)] * 6  # six images, each its own private row
        journal = _cli(tmp_path, env, "journal", "--format", "json")
        assert journal.returncode == 0 and secret not in journal.stdout
        assert secret not in pg_backend.all_text()
