"""What an environment runs, as the desired state a manifest would declare (``reconciler import``).

Pure: one recorded environment, its instance rows and its live listing in, an ``EnvironmentSpec`` out, plus the
secret variables the operator must set and notes on what could not be read. One server per listed container;
the image, ports and state come from the listing, the env, transport, endpoint and capabilities from the row's
stored config where a row is recorded. A value that looks secret is never carried over: it becomes a
``secretFromEnv`` reference, so the text written from the result holds no secret value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from reconciler.core.observed import LiveContainer, LiveListing, LivePort, RecordedEnvironment, RecordedInstance
from reconciler.model.spec import (
    DEFAULT_HOST_IP,
    TRANSPORTS,
    DesiredState,
    EnvironmentPolicy,
    EnvironmentSpec,
    EnvValue,
    SecretRef,
    ServerSpec,
    Transport,
)
from reconciler.model.spec_hash import SECRET_MARKER
from reconciler.model.stored import read_stored

# Key names whose values are treated as secrets whatever the row says (case-insensitive, anywhere in the name).
SECRET_KEY_NAMES = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # the manifest's server name pattern
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Host addresses that mean "every interface": written as no hostIp (the default, DEFAULT_HOST_IP).
_ANY_ADDRESS = frozenset({DEFAULT_HOST_IP, "::", ""})


@dataclass(frozen=True)
class ImportedEnvironment:
    spec: EnvironmentSpec
    secret_vars: tuple[tuple[str, str], ...]  # (variable to set, "server env.KEY") per secretFromEnv written
    notes: tuple[str, ...]  # what was left out or guessed, one sentence each


def looks_secret(key: str, value: str, fingerprinted: bool) -> bool:
    """A value is secret when the stored config marks it (a fingerprint, the marker) or its key looks like it."""
    return (
        fingerprinted
        or value == SECRET_MARKER
        or value.startswith("hmac-sha256:")
        or bool(SECRET_KEY_NAMES.search(key))
    )


def secret_var(server: str, key: str) -> str:
    """The variable a secret is taken from: the server's name and the key, so two servers' values never clash."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{server}_{key}").upper()


def import_environment(
    env: RecordedEnvironment,
    rows: Sequence[RecordedInstance],
    listing: LiveListing,
    mcp_columns: Mapping[str, Mapping[str, Any]] | None = None,
) -> ImportedEnvironment:
    """``mcp_columns``: instance id -> its MCP columns (``Store.recorded_mcp``), read where the row's stored
    config has no ``mcp`` block (a row Agentopia wrote)."""
    by_name: dict[str, RecordedInstance] = {}
    by_id: dict[str, RecordedInstance] = {}
    for recorded in sorted(rows, key=lambda r: r.id):
        if recorded.environment_id != env.id:
            continue
        by_id[recorded.id] = recorded
        if recorded.name:
            by_name.setdefault(recorded.name, recorded)
    servers: list[ServerSpec] = []
    secrets: list[tuple[str, str]] = []
    notes: list[str] = []
    for c in sorted(listing.containers, key=lambda c: c.name):
        if c.state == "not_found":
            continue
        if not _NAME.match(c.name):
            notes.append(f"container {c.name!r} left out: its name is not a valid server name")
            continue
        row = _row_of(c, by_id, by_name)
        image = c.image or (row.image if row is not None else None)
        if image is None:
            notes.append(f"container {c.name} left out: neither the listing nor a row shows its image")
            continue
        columns = (mcp_columns or {}).get(row.id, {}) if row is not None else {}
        server, server_secrets, server_notes = _server(c, row, image, listing.shape, columns)
        servers.append(server)
        secrets.extend(server_secrets)
        notes.extend(server_notes)
    spec = EnvironmentSpec(environment=env.name or env.id, servers=tuple(servers), policy=EnvironmentPolicy())
    return ImportedEnvironment(spec, tuple(secrets), tuple(notes))


def _row_of(
    c: LiveContainer, by_id: Mapping[str, RecordedInstance], by_name: Mapping[str, RecordedInstance]
) -> RecordedInstance | None:
    """The container's row: by the instance id the listing names, else by name (never a row of another id)."""
    if c.instance_id:
        found = by_id.get(c.instance_id)
        if found is not None:
            return found
    row = by_name.get(c.name)
    if row is not None and c.instance_id and row.id != c.instance_id:
        return None
    return row


def _mcp_fields(config: Mapping[str, Any], columns: Mapping[str, Any]) -> tuple[Any, str | None, list[str]]:
    """transport, endpoint and capabilities: the stored config's ``mcp`` block (the reconciler's, with the true
    transport), else the MCP columns (the transport column holds only what its CHECK accepts, so the probe
    metadata's transport comes first)."""
    mcp = config.get("mcp")
    if isinstance(mcp, Mapping) and mcp.get("transport") in TRANSPORTS:
        endpoint = mcp.get("endpoint")
        return (
            mcp.get("transport"),
            endpoint if isinstance(endpoint, str) else None,
            _names(mcp.get("capabilities")),
        )
    metadata = columns.get("mcp_discovery_metadata")
    transport = metadata.get("transport") if isinstance(metadata, Mapping) else None
    if transport not in TRANSPORTS:
        transport = columns.get("mcp_transport_type")
    endpoint = columns.get("mcp_endpoint_path")
    return (
        transport,
        endpoint if isinstance(endpoint, str) else None,
        _names(columns.get("mcp_server_capabilities")),
    )


def _names(value: Any) -> list[str]:
    """Capability names from a list, or from a mapping of name -> announced (``{"tools": {...}}``)."""
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str)]
    if isinstance(value, Mapping):
        return sorted(str(k) for k, v in value.items() if v not in (None, False))
    return []


def _server(
    c: LiveContainer, row: RecordedInstance | None, image: str, shape: str, columns: Mapping[str, Any]
) -> tuple[ServerSpec, list[tuple[str, str]], list[str]]:
    config: Mapping[str, Any] = row.config if row is not None else {}
    notes: list[str] = []
    port, host_port, host_ip = _ports(c, config, shape)
    transport, endpoint, capabilities = _mcp_fields(config, columns)
    if transport not in TRANSPORTS:
        transport = "streamable-http" if host_port is not None else "stdio"
        notes.append(f"{c.name}: transport not recorded; written as {transport} (check it)")
    env, secrets = _env(c.name, config)
    desired = config.get("desired_state")
    state = desired if desired in ("running", "stopped") else ("running" if c.state == "running" else "stopped")
    server = ServerSpec(
        name=c.name,
        image=image,
        transport=cast(Transport, transport),
        endpoint=endpoint,
        port=port,
        host_port=host_port,
        host_ip=host_ip,
        capabilities=tuple(capabilities),
        state=cast(DesiredState, state),
        env=env,
        protect=row.protect if row is not None else False,
    )
    return server, secrets, notes


def _env(server: str, config: Mapping[str, Any]) -> tuple[tuple[tuple[str, EnvValue], ...], list[tuple[str, str]]]:
    fingerprinted = read_stored(config).secret_fingerprints
    items = config.get("Env")
    out: list[tuple[str, EnvValue]] = []
    secrets: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, str) or "=" not in item:
            continue
        key, _, value = item.partition("=")
        if not _ENV_KEY.match(key) or key in seen:
            continue
        seen.add(key)
        if looks_secret(key, value, key in fingerprinted):
            var = secret_var(server, key)
            out.append((key, SecretRef(var)))
            secrets.append((var, f"{server} env.{key}"))
        else:
            out.append((key, value))
    return tuple(out), secrets


def _ports(c: LiveContainer, config: Mapping[str, Any], shape: str) -> tuple[int | None, int | None, str | None]:
    """port, hostPort and hostIp: the first TCP port the listing shows published (else one it shows exposed);
    a listing that shows no ports (shape a) leaves the stored config's."""
    published = [p for p in c.ports if p.host_port is not None and p.protocol == "tcp"]
    if published:
        first = min(published, key=lambda p: (p.container_port, p.host_port or 0))
        return first.container_port, first.host_port, _host_ip(first, published)
    if shape != "a" and c.ports:
        exposed = min(p.container_port for p in c.ports if p.protocol == "tcp") if c.ports else None
        return exposed, None, None
    port = config.get("port")
    port = port if isinstance(port, int) else None
    host_port: int | None = None
    host_ip: str | None = None
    bindings = (
        config.get("HostConfig", {}).get("PortBindings", {})
        if isinstance(config.get("HostConfig"), Mapping)
        else {}
    )
    entries = bindings.get(f"{port}/tcp") if isinstance(bindings, Mapping) else None
    if port is not None and isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
        raw = str(entries[0].get("HostPort", ""))
        host_port = int(raw) if raw.isdigit() else None
        ip = entries[0].get("HostIp")
        host_ip = ip if isinstance(ip, str) and host_port is not None and ip not in _ANY_ADDRESS else None
    return port, host_port, host_ip


def _host_ip(first: LivePort, published: Sequence[LivePort]) -> str | None:
    """The address a port is published on; Docker lists a binding on every interface once per address family
    (0.0.0.0 and ::), which is the default and written as no hostIp."""
    same = {p.host_ip or "" for p in published if p.container_port == first.container_port}
    if same & _ANY_ADDRESS:
        return None
    return first.host_ip
