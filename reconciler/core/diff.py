"""Field-level differences between a desired ServerSpec and what a recorded row stored.

Pure: returns ``Change`` values; secret values are never compared or shown, only their keyed
fingerprints, and a differing secret appears as ``(sensitive, changed)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core.plan import Change
from reconciler.model.spec import DEFAULT_HOST_IP, SecretRef, ServerSpec
from reconciler.model.stored import read_stored

SENSITIVE = "(sensitive)"
SENSITIVE_CHANGED = "(sensitive, changed)"


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _stored_binding(config: Mapping[str, Any], port: object) -> Mapping[str, Any]:
    bindings = config.get("HostConfig", {})
    if not isinstance(bindings, Mapping):
        return {}
    ports = bindings.get("PortBindings", {})
    if not isinstance(ports, Mapping):
        return {}
    entries = ports.get(f"{port}/tcp")
    if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
        return entries[0]
    return {}


def _stored_host_port(config: Mapping[str, Any], port: object) -> object:
    bindings = config.get("HostConfig", {})
    if not isinstance(bindings, Mapping):
        return None
    ports = bindings.get("PortBindings", {})
    if not isinstance(ports, Mapping):
        return None
    entries = ports.get(f"{port}/tcp")
    if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
        return entries[0].get("HostPort")
    return None


def spec_changes(
    spec: ServerSpec,
    config: Mapping[str, Any],
    old_image: str | None,
    secret_fingerprints: Mapping[str, str],
) -> list[Change]:
    """What differs between the desired spec and the stored config (fields the stored config holds)."""
    changes: list[Change] = []
    if old_image != spec.image:
        changes.append(Change("image", old_image, spec.image))
    view = read_stored(config)
    mcp = config.get("mcp")
    if isinstance(mcp, Mapping):
        for name, old, new in (
            ("transport", mcp.get("transport"), spec.transport),
            ("endpoint", mcp.get("endpoint"), spec.endpoint),
            (
                "capabilities",
                _text(sorted(map(str, mcp.get("capabilities") or []))),
                _text(sorted(spec.capabilities)),
            ),
        ):
            if name in mcp and _text(old) != _text(new):
                changes.append(Change(name, _text(old), _text(new)))
    if "port" in config or "Env" in config:
        old_port = config.get("port")
        if _text(old_port) != _text(spec.port):
            changes.append(Change("port", _text(old_port), _text(spec.port)))
        old_host = _stored_host_port(config, old_port)
        if _text(old_host) != _text(spec.host_port):
            changes.append(Change("host_port", _text(old_host), _text(spec.host_port)))
        if spec.host_port is not None and old_host is not None:
            old_ip = _stored_binding(config, old_port).get("HostIp") or DEFAULT_HOST_IP
            if old_ip != spec.effective_host_ip:
                changes.append(Change("host_ip", str(old_ip), spec.effective_host_ip))
    if "Env" in config:
        changes.extend(_env_changes(spec, view.plain_env, view.secret_fingerprints, secret_fingerprints))
    return changes


def _env_changes(
    spec: ServerSpec,
    old_plain: Mapping[str, str],
    old_secret: Mapping[str, str],
    secret_fingerprints: Mapping[str, str],
) -> list[Change]:
    changes: list[Change] = []
    seen: set[str] = set()
    for key, value in spec.env:
        seen.add(key)
        if isinstance(value, SecretRef):
            new_fp = secret_fingerprints.get(value.env_var, "unresolved")
            if key in old_plain:
                changes.append(Change(f"env.{key}", SENSITIVE, SENSITIVE_CHANGED))
            elif old_secret.get(key) != new_fp:
                changes.append(Change(f"env.{key}", SENSITIVE if key in old_secret else None, SENSITIVE_CHANGED))
        elif key in old_secret:
            changes.append(Change(f"env.{key}", SENSITIVE, value))
        elif old_plain.get(key) != value:
            changes.append(Change(f"env.{key}", old_plain.get(key), value))
    for key in sorted(set(old_plain) | set(old_secret)):
        if key not in seen:
            changes.append(Change(f"env.{key}", SENSITIVE if key in old_secret else old_plain[key], None))
    return changes


def create_changes(spec: ServerSpec) -> list[Change]:
    """The fields a new server gets, for the plan's display (secrets by reference only)."""
    changes = [Change("image", None, spec.image), Change("transport", None, spec.transport)]
    if spec.port is not None:
        changes.append(Change("port", None, str(spec.port)))
    if spec.host_port is not None:
        changes.append(Change("host_port", None, str(spec.host_port)))
        if spec.host_ip is not None:
            changes.append(Change("host_ip", None, spec.host_ip))
    if spec.state != "running":
        changes.append(Change("state", None, spec.state))
    for key, value in spec.env:
        changes.append(Change(f"env.{key}", None, SENSITIVE if isinstance(value, SecretRef) else value))
    return changes
