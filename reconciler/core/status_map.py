"""Docker container states mapped onto Agentopia's installation-status enum (docs/architecture.md).

Agentopia itself wrote raw Docker states into ``status_on_toolbox`` and those writes failed; the
reconciler writes only enum values, and this table is the one place the mapping lives.
"""

from __future__ import annotations

from reconciler.core.observed import INSTALLATION_STATUSES
from reconciler.model.spec import DesiredState

# Live states that say nothing reliable about the container: never a destructive step on them.
UNCERTAIN_STATES: frozenset[str] = frozenset({"unknown", "error_inspecting", "removing"})
# Live states for which a desired-running server needs a (re)start.
NOT_RUNNING_STATES: frozenset[str] = frozenset({"exited", "dead", "created", "paused", "restarting"})


def status_for(live_state: str, desired_state: DesiredState, probe_ok: bool | None = None) -> str | None:
    """The enum value that describes ``live_state``; None when the state is absent or uncertain. A running
    container whose server failed its readiness probe this cycle (``probe_ok`` False) is ``error_runtime``:
    the container runs, the MCP server in it does not answer (README, "Status mapping")."""
    if live_state == "running":
        status = "error_runtime" if probe_ok is False else "running"
    elif live_state in ("created", "restarting"):
        status = "deploying"
    elif live_state == "paused":
        status = "stopped"
    elif live_state in ("exited", "dead"):
        status = "stopped" if desired_state == "stopped" else "error"
    else:
        return None
    assert status in INSTALLATION_STATUSES
    return status
