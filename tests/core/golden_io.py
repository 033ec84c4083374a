"""Reading a golden case: desired.yaml (a small test-only manifest reader) and observed.json.

The manifest reader here knows only the subset the golden cases use and keeps ``SourceRef`` paths relative
(``desired.yaml``) so expected plans do not depend on where the checkout lives. The format of
observed.json is documented in golden/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.health import ProbeResult
from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    LivePort,
    LiveState,
    Observed,
    RecordedEnvironment,
    RecordedInstance,
    RecordedState,
    ServerHealth,
    Unreachable,
)
from reconciler.core.plan import Policy
from reconciler.model.spec import (
    Desired,
    EnvironmentPolicy,
    EnvironmentSpec,
    EnvValue,
    ReadinessSpec,
    SecretRef,
    ServerSpec,
    SourceRef,
)
from reconciler.model.spec_hash import spec_hash
from reconciler.model.stored import read_stored, stored_config

DEFAULT_NOW = "2026-11-24T10:00:00+00:00"


def instance_from_config(
    id: str, env_id: str, name: str | None, status: str, config: Mapping[str, Any], image: str | None = None
) -> RecordedInstance:
    """A row as the stores build it: the planner's fields read from the stored config."""
    view = read_stored(config)
    return RecordedInstance(
        id=id,
        environment_id=env_id,
        catalog_id=f"cat-{view.image or image or 'none'}",
        name=name,
        status=status,
        image=view.image or image,
        managed=view.managed,
        spec_hash=view.spec_hash,
        hash_version=view.hash_version,
        protect=view.protect,
        config=dict(config),
    )


def _plain(node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return {_plain(k): _plain(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    return yaml.safe_load(yaml.serialize(node))


def _server(node: yaml.MappingNode, file: str) -> ServerSpec:
    data = _plain(node)
    env: list[tuple[str, EnvValue]] = []
    for key, value in (data.get("env") or {}).items():
        env.append((str(key), SecretRef(value["secretFromEnv"]) if isinstance(value, dict) else str(value)))
    return ServerSpec(
        name=data["name"],
        image=data["image"],
        transport=data.get("transport", "streamable-http"),
        endpoint=data.get("endpoint"),
        port=data.get("port"),
        host_port=data.get("hostPort"),
        capabilities=tuple(data.get("capabilities", ())),
        state=data.get("state", "running"),
        env=tuple(env),
        protect=bool(data.get("protect", False)),
        source=SourceRef(file, node.start_mark.line + 1, node.start_mark.column + 1),
        readiness=ReadinessSpec(**{_SNAKE.get(k, k): v for k, v in (data.get("readiness") or {}).items()}),
        tools=tuple(data["tools"]) if "tools" in data else None,
        on_unhealthy=data.get("onUnhealthy", "none"),
    )


_SNAKE = {"failureThreshold": "failure_threshold"}


def _health(data: dict[str, Any], now: datetime) -> dict[tuple[str, str], ServerHealth]:
    """``"health": {"ENV-ID/server": {"ok": false, "error": "...", "failures": 1, "threshold": 3, "kind": "mcp",
    "capabilities": [...], "tools": [...]}}``: this cycle's readiness probes."""
    out = {}
    for key, h in data.items():
        env_id, server = key.split("/", 1)
        result = ProbeResult(
            ok=bool(h["ok"]), error=h.get("error"), protocol_version=h.get("protocol_version"),
            capabilities=tuple(h.get("capabilities", ())), tools=tuple(h.get("tools", ())),
        )  # fmt: skip
        out[(env_id, server)] = ServerHealth(
            h.get("kind", "mcp"), result, now, failures=int(h.get("failures", 0 if h["ok"] else 1)),
            threshold=int(h.get("threshold", 3)),
        )  # fmt: skip
    return out


def parse_desired(text: str, file: str = "desired.yaml") -> Desired:
    envs: list[EnvironmentSpec] = []
    for doc in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if doc is None:
            continue
        assert isinstance(doc, yaml.MappingNode)
        nodes = {k.value: v for k, v in doc.value}
        policy = _plain(nodes["policy"]) if "policy" in nodes else {}
        servers_node = nodes.get("servers")
        servers = (
            tuple(_server(n, file) for n in servers_node.value)
            if isinstance(servers_node, yaml.SequenceNode)
            else ()
        )
        envs.append(
            EnvironmentSpec(
                environment=str(_plain(nodes["environment"])),
                servers=servers,
                policy=EnvironmentPolicy(
                    prune=bool(policy.get("prune", False)),
                    allow_empty=bool(policy.get("allowEmpty", False)),
                    adopt=bool(policy.get("adopt", False)),
                ),
                source=SourceRef(file, doc.start_mark.line + 1, doc.start_mark.column + 1),
            )
        )
    return Desired(tuple(envs), digest="sha256:golden", files=(file,))


def _spec_from_json(data: dict[str, Any]) -> ServerSpec:
    env = tuple(
        (str(k), SecretRef(v["secretFromEnv"]) if isinstance(v, dict) else str(v))
        for k, v in (data.get("env") or {}).items()
    )
    return ServerSpec(
        name=data["name"],
        image=data["image"],
        transport=data.get("transport", "streamable-http"),
        endpoint=data.get("endpoint"),
        port=data.get("port"),
        host_port=data.get("hostPort"),
        capabilities=tuple(data.get("capabilities", ())),
        state=data.get("state", "running"),
        env=env,
        protect=bool(data.get("protect", False)),
        source=SourceRef("desired.yaml", 0),
    )


def _listing(env_id: str, data: dict[str, Any]) -> LiveState:
    if "unreachable" in data:
        return Unreachable(env_id, str(data["unreachable"]))
    containers = tuple(
        LiveContainer(
            name=c["name"],
            state=c["state"],
            image=c.get("image"),
            instance_id=c.get("instance_id"),
            container_id=c.get("container_id"),
            ports=tuple(LivePort(p["container_port"], p.get("host_port")) for p in c.get("ports", [])),
            raw_state=c.get("raw_state"),
        )
        for c in data.get("containers", [])
    )
    return LiveListing(env_id, containers, data.get("shape", "a"))


def parse_observed(data: dict[str, Any]) -> tuple[Observed, dict[str, str], Policy, datetime]:
    fps = {str(k): str(v) for k, v in data.get("secret_fingerprints", {}).items()}
    envs = tuple(
        RecordedEnvironment(e["id"], e.get("name"), e.get("address", "10.0.0.1"), e.get("status", "active"))
        for e in data["environments"]
    )
    rows = []
    for r in data.get("instances", []):
        if "stored_spec" in r:
            spec = _spec_from_json(r["stored_spec"])
            digest = r.get("spec_hash") or spec_hash(spec, r.get("fingerprints_at_deploy", fps))
            config: dict[str, Any] = stored_config(spec, digest, r.get("fingerprints_at_deploy", fps))
            config.update(r.get("config_overrides", {}))
        else:
            config = r.get("config", {})
        rows.append(
            instance_from_config(
                r["id"], r["environment_id"], r.get("name"), r.get("status", "running"), config, r.get("image")
            )
        )
    live = {env_id: _listing(env_id, listing) for env_id, listing in data.get("listings", {}).items()}
    known = {f.name for f in fields(Policy)}
    policy = Policy(**{k: v for k, v in data.get("policy", {}).items() if k in known})
    now = datetime.fromisoformat(data.get("now", DEFAULT_NOW))
    health = _health(data.get("health", {}), now)
    return Observed(RecordedState(envs, tuple(rows)), live, health), fps, policy, now


def load_case(case: Path) -> tuple[Desired, Observed, Policy, datetime, dict[str, str]]:
    desired = parse_desired((case / "desired.yaml").read_text())
    observed, fps, policy, now = parse_observed(json.loads((case / "observed.json").read_text()))
    return desired, observed, policy, now, fps
