"""Observed state: what the database records and what the DTMA agents report.

The store adapters build ``Recorded*`` values from database rows; the DTMA client builds ``Live*`` values
from the three listing shapes. The planner reads only these.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from reconciler.model.secrets import Secret

if TYPE_CHECKING:
    from reconciler.core.health import ProbeResult

# The Agentopia installation-status enum (account_tool_installation_status_enum). The reconciler writes
# nothing outside it; values read from the database may be anything (Agentopia writes invalid ones).
INSTALLATION_STATUSES: tuple[str, ...] = (
    "pending_install", "installing", "active", "error_install", "pending_uninstall", "uninstalling",
    "uninstalled", "error_uninstall", "pending_config", "stopped", "starting", "stopping", "error_runtime",
    "disabled", "pending_deploy", "deploying", "running", "error", "pending_delete", "deleting",
)  # fmt: skip

ENVIRONMENT_STATUSES: tuple[str, ...] = (
    "inactive", "pending_creation", "creating", "active", "error_creation", "pending_deletion", "deleting",
    "error_deletion", "unresponsive", "scaling", "pending_provision", "provisioning", "error_provisioning",
    "pending_deprovision", "deprovisioning", "deprovisioned", "error_deprovisioning", "awaiting_heartbeat",
)  # fmt: skip

ContainerState = Literal[
    "created", "running", "paused", "restarting", "removing", "exited", "dead",
    "not_found", "error_inspecting", "unknown",
]  # fmt: skip
CONTAINER_STATES: tuple[str, ...] = (
    "created", "running", "paused", "restarting", "removing", "exited", "dead",
    "not_found", "error_inspecting", "unknown",
)  # fmt: skip

ListingShape = Literal["a", "b", "c"]


@dataclass(frozen=True)
class RecordedEnvironment:
    """A row of account_tool_environments (a toolbox)."""

    id: str
    name: str | None
    address: str | None
    status: str
    last_heartbeat_at: datetime | None = None
    # The row's dtma_bearer_token: the agent's token toward the backend. Used to call the agent only with
    # RECONCILER_DTMA_TOKEN_SOURCE=row; by default agents are called with BACKEND_TO_DTMA_API_KEY.
    dtma_token: Secret | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecordedInstance:
    """A row of account_tool_instances, with the parts of its JSON config the planner needs."""

    id: str
    environment_id: str
    catalog_id: str
    name: str | None  # instance_name_on_toolbox
    status: str  # status_on_toolbox, as stored (may be outside the enum)
    image: str | None  # the image this row deployed (config, else the catalog's docker_image_url)
    managed: bool  # base_config_override_json.managed_by == "mcp-reconciler"
    spec_hash: str | None = None
    hash_version: int | None = None
    protect: bool = False
    # The redacted config the reconciler stored (base_config_override_json), for reasons and fingerprints.
    config: Mapping[str, Any] = field(default_factory=dict, compare=False)
    error_message: str | None = None
    last_heartbeat_from_dtma: datetime | None = None


@dataclass(frozen=True)
class RecordedState:
    """Everything read from the database in one observation (two queries, however many rows)."""

    environments: tuple[RecordedEnvironment, ...]
    instances: tuple[RecordedInstance, ...]


@dataclass(frozen=True, slots=True)
class LivePort:
    container_port: int
    host_port: int | None
    protocol: str = "tcp"
    host_ip: str | None = None


@dataclass(frozen=True, slots=True)
class LiveContainer:
    """One container as a DTMA listing reports it, whatever the shape."""

    name: str  # without shape (b)'s leading slash
    state: ContainerState
    image: str | None = None
    instance_id: str | None = None  # account_tool_instance_id, when the shape carries it
    container_id: str | None = None
    ports: tuple[LivePort, ...] = ()
    raw_state: str | None = None  # what the agent said, when it was mapped to "unknown"


@dataclass(frozen=True)
class LiveListing:
    """A complete, successful listing of one toolbox. A failed listing is never one of these."""

    environment_id: str
    containers: tuple[LiveContainer, ...]
    shape: ListingShape
    dtma_version: str | None = None

    def by_name(self) -> dict[str, LiveContainer]:
        return {c.name: c for c in self.containers}


@dataclass(frozen=True)
class Unreachable:
    """A toolbox whose listing failed or that is not active: skipped, and never read as empty."""

    environment_id: str
    reason: str


LiveState = LiveListing | Unreachable


@dataclass(frozen=True)
class ServerHealth:
    """What this cycle's readiness probe found about one running server, and how many cycles in a row it has
    failed (kept by the caller between cycles). A failed probe is not "unobserved": the container was seen
    running, and its server did not answer."""

    kind: str  # the readiness probed: mcp or http
    result: ProbeResult
    probed_at: datetime
    failures: int = 0  # consecutive failed cycles, this one included; 0 when the probe passed
    threshold: int = 3  # failures that make the server unhealthy (failureThreshold)

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def unhealthy(self) -> bool:
        """Failed ``threshold`` cycles in a row: the notice, the gauge and ``onUnhealthy`` act on this."""
        return self.failures >= self.threshold


@dataclass(frozen=True)
class Observed:
    """One full observation: recorded state plus a listing (or the reason there is none) per toolbox, and the
    readiness probes of the running servers that have one."""

    recorded: RecordedState
    live: Mapping[str, LiveState]  # by environment id
    health: Mapping[tuple[str, str], ServerHealth] = field(default_factory=dict)  # (environment id, server)


def is_uuid(value: str) -> bool:
    """Whether ``value`` can be an instance or environment id: Agentopia's tables key them by UUID."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
