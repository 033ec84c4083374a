"""The desired state, as declared in manifests.

These dataclasses are the contract between the manifest loader and the planner. They hold secret
*references* (``SecretRef``), never secret values: values are resolved from the process environment only
when a container is deployed, and only their keyed fingerprints enter the spec hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["stdio", "sse", "streamable-http", "websocket"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "sse", "streamable-http", "websocket")
DesiredState = Literal["running", "stopped"]
ReadinessType = Literal["mcp", "http", "none"]
READINESS_TYPES: tuple[ReadinessType, ...] = ("mcp", "http", "none")
OnUnhealthy = Literal["restart", "none"]
ON_UNHEALTHY: tuple[OnUnhealthy, ...] = ("restart", "none")
# Transports the MCP probe speaks (every network one), so the default readiness of a published server on them
# is ``mcp``; a stdio server's health is its container state.
MCP_PROBE_TRANSPORTS: frozenset[str] = frozenset({"streamable-http", "sse", "websocket"})
# The MCP endpoint probed when the manifest names none, per transport (the SDKs' usual paths).
DEFAULT_MCP_PATHS: dict[str, str] = {"streamable-http": "/mcp", "sse": "/sse", "websocket": "/"}
# The path an http readiness GETs when neither the manifest nor the catalog names one.
DEFAULT_HEALTH_PATH = "/health"
# Host addresses that publish on every interface: only there is the toolbox's own address sure to reach it.
EVERY_INTERFACE: frozenset[str] = frozenset({"0.0.0.0", "::"})

MANAGED_BY = "mcp-reconciler"
"""Marker stored in base_config_override_json.managed_by on every instance the reconciler owns."""


@dataclass(frozen=True, slots=True, order=True)
class SourceRef:
    """Where in a manifest something was declared."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """An env value taken from the reconciler's own environment at apply time (``secretFromEnv``)."""

    env_var: str
    source: SourceRef = field(default=SourceRef("<memory>", 0), compare=False, repr=False)
    """Where ``secretFromEnv`` was written, so a missing variable is reported at its line."""


EnvValue = str | SecretRef


@dataclass(frozen=True)
class ReadinessSpec:
    """How a server proves it is ready, as declared (``readiness:``); unset fields take their defaults
    (``ServerSpec.readiness_type`` and the settings). Not part of the spec hash: changing it recreates nothing."""

    type: ReadinessType | None = None
    path: str | None = None
    timeout: float | None = None  # seconds a server has after a create, replace or start to pass
    failure_threshold: int | None = None  # failed cycles in a row before the server is unhealthy


# The host address a hostPort is published on when the manifest names none. Agentopia's backend reaches an MCP
# server at the toolbox's own address, so the default must serve that address: every interface, said out loud
# (Docker's own default when no HostIp is sent) rather than left implicit. See README, "Host address".
DEFAULT_HOST_IP = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One MCP server as the manifest wants it."""

    name: str
    image: str
    transport: Transport
    endpoint: str | None = None
    port: int | None = None
    host_port: int | None = None
    host_ip: str | None = None  # Docker's HostIp for hostPort; None: DEFAULT_HOST_IP
    capabilities: tuple[str, ...] = ()
    state: DesiredState = "running"
    env: tuple[tuple[str, EnvValue], ...] = ()
    protect: bool = False
    source: SourceRef = field(default=SourceRef("<memory>", 0), compare=False)
    readiness: ReadinessSpec = ReadinessSpec()
    tools: tuple[str, ...] | None = None  # pinned tool names the server must keep listing (mcp readiness)
    on_unhealthy: OnUnhealthy = "none"

    @property
    def readiness_type(self) -> ReadinessType:
        """The declared type, else ``mcp`` for a streamable-http, sse or websocket server published on every
        interface (the toolbox's address reaches it), else ``none`` (stdio, no hostPort, or a host address of
        its own)."""
        if self.readiness.type is not None:
            return self.readiness.type
        published = self.host_port is not None and self.effective_host_ip in EVERY_INTERFACE
        return "mcp" if self.transport in MCP_PROBE_TRANSPORTS and published else "none"

    @property
    def readiness_path(self) -> str:
        """The path probed: the declared one, else the MCP endpoint (mcp) or ``/health`` (http)."""
        if self.readiness.path is not None:
            return self.readiness.path
        if self.readiness_type == "mcp":
            return self.endpoint or DEFAULT_MCP_PATHS.get(self.transport, "/mcp")
        return DEFAULT_HEALTH_PATH

    @property
    def effective_host_ip(self) -> str:
        return self.host_ip or DEFAULT_HOST_IP

    @property
    def env_map(self) -> Mapping[str, EnvValue]:
        return dict(self.env)

    @property
    def secret_refs(self) -> tuple[tuple[str, SecretRef], ...]:
        return tuple((k, v) for k, v in self.env if isinstance(v, SecretRef))


@dataclass(frozen=True)
class EnvironmentPolicy:
    prune: bool = False
    allow_empty: bool = False
    # Take a running container with a declared server's name and image, and no managed row, under
    # management (a row is written; the container is not recreated).
    adopt: bool = False


@dataclass(frozen=True)
class EnvironmentSpec:
    """One manifest document: a toolbox (by name or id) and the servers it should run."""

    environment: str
    servers: tuple[ServerSpec, ...]
    policy: EnvironmentPolicy = EnvironmentPolicy()
    source: SourceRef = field(default=SourceRef("<memory>", 0), compare=False)


@dataclass(frozen=True)
class Desired:
    """Everything the manifests declare, plus the digest of the files they came from."""

    environments: tuple[EnvironmentSpec, ...]
    digest: str = ""
    files: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    """YAML files found in a directory that are not manifests (a CI workflow beside them)."""
