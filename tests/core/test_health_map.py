"""The container state -> (MCP server state, health) table, value by value, against Agentopia's enums."""

from __future__ import annotations

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
