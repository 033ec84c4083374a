"""MCP health: what a readiness probe is aimed at, what it found, and the mapping from container states to the
MCP server state and health that Agentopia shows (docs/architecture.md).

Pure: the probe itself is an adapter behind ``reconciler.ports.Prober``; this module only holds the values
it takes and returns and the rules that read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.observed import INSTALLATION_STATUSES


class ReadinessKind(StrEnum):
    """How a server proves it is ready: the MCP handshake, an HTTP GET that answers 2xx, or nothing more than
    its container's state (``stdio`` servers have no network endpoint)."""

    MCP = "mcp"
    HTTP = "http"
    NONE = "none"


# MCP transports a probe can speak; a stdio server is never probed.
PROBE_TRANSPORTS: tuple[str, ...] = ("streamable-http", "sse", "websocket")


@dataclass(frozen=True)
class ProbeTarget:
    """One server to probe: ``http://{address}:{port}{path}``."""

    environment_id: str
    server: str
    address: str  # the toolbox's host (its public address)
    port: int  # the server's published hostPort
    kind: ReadinessKind
    path: str  # the MCP endpoint path (mcp), or health_check_path (http)
    transport: str = "streamable-http"  # streamable-http | sse | websocket
    timeout: float = 5.0  # seconds for the whole probe

    @property
    def key(self) -> tuple[str, str]:
        return (self.environment_id, self.server)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        path = self.path if self.path.startswith("/") else f"/{self.path}"
        return f"http://{host}:{self.port}{path}"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe found. ``error`` is one redacted line, set whenever ``ok`` is False."""

    ok: bool
    error: str | None = None
    duration: float = 0.0  # seconds
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    capabilities: tuple[str, ...] = ()  # announced: "tools", "resources", "prompts", "logging", ...
    tools: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()


# The MCP server states and health values Agentopia's MCP server status knows.
MCP_SERVER_STATES: tuple[str, ...] = ("running", "stopped", "starting", "error", "unknown")
HEALTH_VALUES: tuple[str, ...] = ("healthy", "unhealthy", "unknown")

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
UNKNOWN = "unknown"

# Container state -> (MCP server state, health), as the issue and Agentopia's own analysis give it.
MCP_STATE_TABLE: Mapping[str, tuple[str, str]] = {
    "running": ("running", HEALTHY),
    "exited": ("stopped", UNHEALTHY),
    "starting": ("starting", UNKNOWN),
    "error": ("error", UNHEALTHY),
}
_OTHER: tuple[str, str] = (UNKNOWN, UNKNOWN)


def mcp_state(container_state: str) -> tuple[str, str]:
    """(server state, health) for a container state; anything not in the table is (unknown, unknown)."""
    return MCP_STATE_TABLE.get(container_state, _OTHER)


def instance_status(server_state: str) -> str | None:
    """The ``status_on_toolbox`` value for an MCP server state, or None to leave the column as it is:
    ``unknown`` is not a value of Agentopia's installation enum, and a write of it would fail."""
    return server_state if server_state in INSTALLATION_STATUSES else None


def probed_state(container_state: str, result: ProbeResult | None) -> tuple[str, str]:
    """(server state, health) once a probe's result is known: a running container whose server failed its
    probe is unhealthy; without a probe (readiness ``none``, or not probed yet) the table decides."""
    state, health = mcp_state(container_state)
    if result is not None and state == "running":
        health = HEALTHY if result.ok else UNHEALTHY
    return state, health
