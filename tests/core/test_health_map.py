"""The container state -> (MCP server state, health) table, value by value, against Agentopia's enums."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.core.health import (
    HEALTH_VALUES,
    MCP_SERVER_STATES,
    ProbeResult,
    ProbeTarget,
    ReadinessKind,
    instance_status,
    mcp_state,
    probed_state,
)
from reconciler.core.observed import INSTALLATION_STATUSES
from reconciler.core.status_map import status_for

# account_tool_installation_status_enum, exactly as Agentopia's schema declares it
INSTALLATION_ENUM = {
    "pending_install", "installing", "active", "error_install", "pending_uninstall", "uninstalling",
    "uninstalled", "error_uninstall", "pending_config", "stopped", "starting", "stopping", "error_runtime",
    "disabled", "pending_deploy", "deploying", "running", "error", "pending_delete", "deleting",
}  # fmt: skip
HEALTH_ENUM = {"healthy", "unhealthy", "unknown"}

TABLE = [
    ("running", "running", "healthy", "running"),
    ("exited", "stopped", "unhealthy", "stopped"),
    ("starting", "starting", "unknown", "starting"),
    ("error", "error", "unhealthy", "error"),
    # anything else: unknown/unknown, and status_on_toolbox is left alone ("unknown" is not an enum value)
    ("created", "unknown", "unknown", None),
    ("restarting", "unknown", "unknown", None),
    ("paused", "unknown", "unknown", None),
    ("dead", "unknown", "unknown", None),
    ("removing", "unknown", "unknown", None),
    ("not_found", "unknown", "unknown", None),
    ("error_inspecting", "unknown", "unknown", None),
    ("unknown", "unknown", "unknown", None),
    ("", "unknown", "unknown", None),
]


@pytest.mark.parametrize(("container", "state", "health", "written"), TABLE)
def test_table_value_by_value(container: str, state: str, health: str, written: str | None) -> None:
    assert mcp_state(container) == (state, health)
    assert health in HEALTH_ENUM
    assert instance_status(state) == written
    assert written is None or written in INSTALLATION_ENUM


def test_every_written_state_is_an_enum_value() -> None:
    assert set(HEALTH_VALUES) == HEALTH_ENUM
    for state in MCP_SERVER_STATES:
        value = instance_status(state)
        assert value is None or value in INSTALLATION_ENUM
    assert [s for s in MCP_SERVER_STATES if instance_status(s) is None] == ["unknown"]


def test_a_failed_probe_makes_a_running_server_unhealthy() -> None:
    assert probed_state("running", ProbeResult(ok=False, error="timed out")) == ("running", "unhealthy")
    assert probed_state("running", ProbeResult(ok=True)) == ("running", "healthy")
    assert probed_state("exited", ProbeResult(ok=True)) == ("stopped", "unhealthy")
    assert probed_state("running", None) == ("running", "healthy")


def test_target_url_and_key() -> None:
    t = ProbeTarget("env-1", "time", "127.0.0.2", 31001, ReadinessKind.MCP, "mcp")
    assert (t.url, t.key, t.transport) == ("http://127.0.0.2:31001/mcp", ("env-1", "time"), "streamable-http")
    assert ProbeTarget("e", "s", "::1", 8080, ReadinessKind.HTTP, "/health").url == "http://[::1]:8080/health"


# The README's "Status mapping" table: container state, desired state, probe -> status_on_toolbox.
STATUS_TABLE = [
    ("running", "running", None, "running"),
    ("running", "running", True, "running"),
    ("running", "running", False, "error_runtime"),
    ("exited", "running", None, "error"),
    ("exited", "stopped", None, "stopped"),
    ("dead", "running", None, "error"),
    ("dead", "stopped", None, "stopped"),
    ("paused", "running", None, "stopped"),
    ("created", "running", None, "deploying"),
    ("restarting", "running", None, "deploying"),
    ("starting", "running", None, None),
    ("error", "running", None, None),
    ("removing", "running", None, None),
    ("unknown", "running", None, None),
    ("not_found", "running", None, None),
]


@pytest.mark.parametrize(("container", "desired", "probe_ok", "written"), STATUS_TABLE)
def test_status_on_toolbox_value_by_value(
    container: str, desired: str, probe_ok: bool | None, written: str | None
) -> None:
    assert status_for(container, desired, probe_ok) == written  # type: ignore[arg-type]
    assert written is None or written in INSTALLATION_ENUM


def test_the_enum_is_the_one_the_schema_files_declare() -> None:
    # The real columns: PostgreSQL's enum type and SQLite's CHECK accept exactly these values, no others.
    state = Path(__file__).resolve().parents[2] / "state"
    for ddl in (state / "postgres" / "0001_agentopia_tables.sql", state / "sqlite" / "0001_agentopia_tables.sql"):
        text = ddl.read_text()
        anchor = (
            "account_tool_installation_status_enum AS ENUM ("
            if "postgres" in ddl.parts
            else "status_on_toolbox IN ("
        )
        body = text[text.index(anchor) + len(anchor) :].split(")", 1)[0]
        assert set(re.findall(r"'([a-z_]+)'", body)) == INSTALLATION_ENUM == set(INSTALLATION_STATUSES), ddl
