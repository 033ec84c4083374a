"""The redacted config the reconciler stores in account_tool_instances.base_config_override_json.

One function writes it (for the executor) and one reads the parts the planner needs (for the stores), so
the layout lives in one place. Secret values are never in it: a marker and a keyed fingerprint stand in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model.spec import MANAGED_BY, SecretRef, ServerSpec
from reconciler.model.spec_hash import HASH_VERSION, SECRET_MARKER, Fingerprints

SECRET_KEY_ID = "secret_key_id"


def stored_key_id(config: Mapping[str, Any] | None) -> str | None:
    """The id of the key that made a stored config's secret fingerprints (None: no secrets, or stored before
    key ids were)."""
    if not config or not config.get("secret_fingerprints"):
        return None
    value = config.get(SECRET_KEY_ID)
    return value if isinstance(value, str) else None


def stored_config(spec: ServerSpec, spec_hash: str, secret_fingerprints: Mapping[str, str]) -> dict[str, Any]:
    env_list: list[str] = []
    secrets: dict[str, str] = {}
    for key, value in spec.env:
        if isinstance(value, SecretRef):
            env_list.append(f"{key}={SECRET_MARKER}")
            secrets[key] = secret_fingerprints.get(value.env_var, "unresolved")
        else:
            env_list.append(f"{key}={value}")
    config: dict[str, Any] = {
        "managed_by": MANAGED_BY,
        "spec_hash": spec_hash,
        "spec_hash_version": HASH_VERSION,
        "image": spec.image,
        "desired_state": spec.state,
        "protect": spec.protect,
        "source": str(spec.source),
        "mcp": {
            "server_type": "mcp_server",
            "transport": spec.transport,
            "endpoint": spec.endpoint,
            "capabilities": list(spec.capabilities),
        },
        "Env": env_list,
        "secret_fingerprints": secrets,
    }
    if secrets and isinstance(secret_fingerprints, Fingerprints) and secret_fingerprints.key_id:
        config[SECRET_KEY_ID] = secret_fingerprints.key_id  # which key made them (an id, never the key)
    if spec.port is not None:
        config["port"] = spec.port
        if spec.host_port is not None:
            binding = {"HostPort": str(spec.host_port)}
            if spec.host_ip is not None:
                binding["HostIp"] = spec.host_ip
            config["HostConfig"] = {"PortBindings": {f"{spec.port}/tcp": [binding]}}
    return config


@dataclass(frozen=True)
class StoredView:
    """What the planner reads back from a stored config (tolerant: any part may be missing)."""

    managed: bool
    spec_hash: str | None
    hash_version: int | None
    protect: bool
    image: str | None
    secret_fingerprints: Mapping[str, str]
    plain_env: Mapping[str, str]


def read_stored(config: Mapping[str, Any] | None) -> StoredView:
    config = config or {}
    plain: dict[str, str] = {}
    env = config.get("Env")
    if isinstance(env, list):
        for item in env:
            if isinstance(item, str) and "=" in item:
                k, _, v = item.partition("=")
                if v != SECRET_MARKER:
                    plain[k] = v
    fps = config.get("secret_fingerprints")
    version = config.get("spec_hash_version")
    return StoredView(
        managed=config.get("managed_by") == MANAGED_BY,
        spec_hash=config.get("spec_hash") if isinstance(config.get("spec_hash"), str) else None,
        hash_version=version if isinstance(version, int) else None,
        protect=config.get("protect") is True,
        image=config.get("image") if isinstance(config.get("image"), str) else None,
        secret_fingerprints={str(k): str(v) for k, v in fps.items()} if isinstance(fps, dict) else {},
        plain_env=plain,
    )
