"""The pure row helpers both database stores share: CHECK constraints read, column values derived."""

from __future__ import annotations

from reconciler.adapters.store_rows import (
    AGENTOPIA_MCP_RULES,
    McpRules,
    image_version,
    mcp_rules_from_checks,
    mcp_values,
    port_mapping,
)
from reconciler.core.observed import LiveContainer, LiveListing, Observed, RecordedState, Unreachable
from reconciler.runtime.observe import listed_instance_ids
from tests.core.golden_io import instance_from_config

# pg_get_constraintdef's texts on Agentopia's restored pg_dump schema.
AGENTOPIA = [
    "CHECK (((mcp_server_type IS NULL) OR (mcp_server_type = ANY (ARRAY['standard_tool'::text, "
    "'mcp_server'::text]))))",
    "CHECK (((mcp_transport_type IS NULL) OR (mcp_transport_type = ANY (ARRAY['stdio'::text, 'sse'::text, "
    "'websocket'::text]))))",
    "CHECK (((mcp_server_type IS NULL) OR (mcp_server_type = 'standard_tool'::text) OR ((mcp_server_type = "
    "'mcp_server'::text) AND (mcp_transport_type IS NOT NULL))))",
    "CHECK ((status_on_toolbox IS NOT NULL))",  # about something else: ignored
]


def test_agentopias_checks_are_read_as_agentopias_rules() -> None:
    assert mcp_rules_from_checks(AGENTOPIA) == AGENTOPIA_MCP_RULES


def test_no_checks_keep_agentopias_values_but_require_nothing() -> None:
    assert mcp_rules_from_checks([]) == McpRules(required=frozenset())


def test_a_wider_transport_check_is_honoured() -> None:
    rules = mcp_rules_from_checks([*AGENTOPIA[:1], "CHECK (mcp_transport_type IN ('sse', 'streamable-http'))"])
    assert rules.transports == {"sse", "streamable-http"}
    values = mcp_values({"mcp": {"transport": "streamable-http", "capabilities": ["tools"]}}, rules)
    assert values["mcp_transport_type"] == "streamable-http" and values["mcp_server_type"] == "mcp_server"


def test_every_transport_gets_a_combination_agentopias_check_accepts() -> None:
    for transport in ("stdio", "sse", "websocket", "streamable-http"):
        values = mcp_values({"mcp": {"transport": transport, "endpoint": "/mcp", "capabilities": []}})
        assert values["mcp_server_type"] == "mcp_server"
        assert values["mcp_transport_type"] in {"stdio", "sse", "websocket"}
        assert values["mcp_discovery_metadata"]["transport"] == transport


def test_image_version_and_port_mapping() -> None:
    assert image_version("ghcr.io/acme/x:1.2.3") == "1.2.3"
    assert image_version("localhost:5000/acme/x") == "latest"
    assert image_version("acme/x@sha256:" + "b" * 64) == "sha256:" + "b" * 64
    assert image_version("acme/x:2@sha256:" + "b" * 64) == "2"
    assert port_mapping({"port": 8080}) == {"container_port": 8080, "host_port": None}
    bound = {
        "port": 8080,
        "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "10.0.0.5", "HostPort": "31001"}]}},
    }
    assert port_mapping(bound) == {"container_port": 8080, "host_port": 31001}
    assert port_mapping({}) is None


def test_the_listed_instances_are_those_a_listing_shows_by_id_or_by_name() -> None:
    rows = (
        instance_from_config("i-1", "env-1", "a", "running", {}),
        instance_from_config("i-2", "env-1", "b", "running", {}),
        instance_from_config("i-3", "env-1", "c", "running", {}),
        instance_from_config("i-4", "env-2", "a", "running", {}),
    )
    listing = LiveListing(
        "env-1",
        (
            LiveContainer("a", "running", instance_id="i-1"),
            LiveContainer("b", "exited"),  # no id in this shape: by name
            LiveContainer("c", "running", instance_id="someone-else"),  # an id that is not ours: not c's row
            LiveContainer("d", "not_found", instance_id="i-4"),  # gone
        ),
        "c",
    )
    observed = Observed(RecordedState((), rows), {"env-1": listing, "env-2": Unreachable("env-2", "down")})
    assert listed_instance_ids(observed) == ("i-1", "i-2")
