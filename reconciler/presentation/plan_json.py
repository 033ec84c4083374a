"""The plan as JSON (``schemas/plan.v1.schema.json``) and back again.

A saved plan must be replayable: the desired ServerSpec is serialised with secret *references* only
(by variable name), never values, so ``plan_from_dict`` rebuilds every step the executor needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reconciler.core.plan import Action, Change, HealthEntry, Notice, NoticeKind, Plan, Step
from reconciler.core.rollout import Rollout, Toolbox, Wave
from reconciler.core.scope import PlanScope
from reconciler.core.verdict import Verdict
from reconciler.errors import PlanError
from reconciler.model.spec import (
    ON_UNHEALTHY,
    READINESS_TYPES,
    TRANSPORTS,
    Desired,
    EnvironmentPolicy,
    EnvironmentSpec,
    EnvValue,
    ReadinessSpec,
    SecretRef,
    ServerSpec,
    SourceRef,
)
from reconciler.presentation.summary import summary_counts

FORMAT_VERSION = 1


def _source(src: SourceRef | None) -> dict[str, Any] | None:
    return None if src is None else {"file": src.file, "line": src.line, "column": src.column}


def _env_value(key: str, value: EnvValue) -> dict[str, str]:
    if isinstance(value, SecretRef):
        return {"name": key, "secretFromEnv": value.env_var}
    return {"name": key, "value": value}


def spec_to_dict(spec: ServerSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "image": spec.image,
        "transport": spec.transport,
        "endpoint": spec.endpoint,
        "port": spec.port,
        "host_port": spec.host_port,
        "host_ip": spec.host_ip,
        "capabilities": list(spec.capabilities),
        "state": spec.state,
        "env": [_env_value(k, v) for k, v in spec.env],
        "protect": spec.protect,
        "source": _source(spec.source),
        **_readiness_to_dict(spec),
    }


def _readiness_to_dict(spec: ServerSpec) -> dict[str, Any]:
    """The readiness fields a manifest set, only those: a spec that sets none serialises as before."""
    out: dict[str, Any] = {}
    r = spec.readiness
    if r != ReadinessSpec():
        out["readiness"] = {
            "type": r.type,
            "path": r.path,
            "timeout": r.timeout,
            "failure_threshold": r.failure_threshold,
        }
    if spec.tools is not None:
        out["tools"] = list(spec.tools)
    if spec.on_unhealthy != "none":
        out["on_unhealthy"] = spec.on_unhealthy
    return out


def _readiness_from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    r = data.get("readiness")
    if isinstance(r, Mapping):
        kind = r.get("type")
        if kind is not None and kind not in READINESS_TYPES:
            raise ValueError(f"unknown readiness type {kind!r}")
        timeout, threshold = r.get("timeout"), r.get("failure_threshold")
        out["readiness"] = ReadinessSpec(
            type=kind, path=_opt(r.get("path")), timeout=None if timeout is None else float(timeout),
            failure_threshold=None if threshold is None else int(threshold),
        )  # fmt: skip
    if data.get("tools") is not None:
        out["tools"] = tuple(str(t) for t in data["tools"])
    on_unhealthy = data.get("on_unhealthy", "none")
    if on_unhealthy not in ON_UNHEALTHY:
        raise ValueError(f"unknown on_unhealthy {on_unhealthy!r}")
    out["on_unhealthy"] = on_unhealthy
    return out


def step_to_dict(step: Step) -> dict[str, Any]:
    return {
        "environment_id": step.environment_id,
        "environment_name": step.environment_name,
        "server": step.server,
        "action": step.action.value,
        "destructive": step.destructive,
        "reason": step.reason,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in step.changes],
        "source": _source(step.source),
        "desired": spec_to_dict(step.desired) if step.desired is not None else None,
        "instance_id": step.instance_id,
        "status_from": step.status_from,
        "status_to": step.status_to,
        "spec_hash": step.spec_hash,
    }


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    return {
        "environment_id": notice.environment_id,
        "environment_name": notice.environment_name,
        "server": notice.server,
        "kind": notice.kind.value,
        "message": notice.message,
        "source": _source(notice.source),
    }


def health_to_dict(entry: HealthEntry) -> dict[str, Any]:
    return {
        "environment_id": entry.environment_id,
        "environment_name": entry.environment_name,
        "server": entry.server,
        "readiness": entry.kind,
        "ok": entry.ok,
        "error": entry.error,
        "consecutive_failures": entry.failures,
        "unhealthy": entry.unhealthy,
        "protocol_version": entry.protocol_version,
        "server_name": entry.server_name,
        "server_version": entry.server_version,
        "tools": list(entry.tools),
    }


def rollout_to_dict(r: Rollout) -> dict[str, Any]:
    return {
        "server": r.server,
        "spec_hash": r.spec_hash,
        "image": r.image,
        "waves": [
            {
                "wave": w.number,
                "max_in_flight": w.max_in_flight,
                "environments": [{"id": t.environment_id, "name": t.environment_name} for t in w.toolboxes],
            }
            for w in r.waves
        ],
    }


def rollout_from_dict(data: Mapping[str, Any]) -> Rollout:
    waves = tuple(
        Wave(
            int(w["wave"]),
            tuple(Toolbox(str(t["id"]), str(t["name"])) for t in w["environments"]),
            int(w["max_in_flight"]),
        )
        for w in data["waves"]
    )
    return Rollout(str(data["server"]), str(data["spec_hash"]), _opt(data.get("image")), waves)


def health_from_dict(data: Mapping[str, Any]) -> HealthEntry:
    return HealthEntry(
        environment_id=str(data["environment_id"]),
        environment_name=str(data["environment_name"]),
        server=str(data["server"]),
        kind=str(data["readiness"]),
        ok=bool(data["ok"]),
        error=_opt(data.get("error")),
        failures=int(data.get("consecutive_failures", 0)),
        unhealthy=bool(data.get("unhealthy", False)),
        protocol_version=_opt(data.get("protocol_version")),
        server_name=_opt(data.get("server_name")),
        server_version=_opt(data.get("server_version")),
        tools=tuple(str(t) for t in data.get("tools", [])),
    )


def verdict_to_dict(verdict: Verdict) -> dict[str, Any]:
    """``complete``, and what makes the plan incomplete: one entry per gap, by environment and address."""
    return {
        "complete": verdict.complete,
        "incomplete": [
            {"environment": g.environment, "address": g.address, "server": g.server, "kind": str(g.kind),
             "reason": g.reason}
            for g in verdict.gaps
        ],
    }  # fmt: skip


def scope_to_dict(scope: PlanScope) -> dict[str, Any]:
    return {
        "environments": list(scope.environments) if scope.environments is not None else None,
        "servers": list(scope.servers) if scope.servers is not None else None,
        "partial": scope.partial,
        "refreshed": scope.refreshed,
        "addresses": dict(sorted(scope.addresses.items())),
    }


def scope_from_dict(data: Mapping[str, Any] | None) -> PlanScope:
    if data is None:
        return PlanScope()
    envs, servers = data.get("environments"), data.get("servers")
    return PlanScope(
        environments=tuple(str(e) for e in envs) if envs is not None else None,
        servers=tuple(str(s) for s in servers) if servers is not None else None,
        refreshed=bool(data.get("refreshed", True)),
        addresses={str(k): str(v) for k, v in dict(data.get("addresses") or {}).items()},
    )


def desired_to_dict(desired: Desired) -> list[dict[str, Any]]:
    """The environments a saved plan applies, with their servers as declared (secret references only)."""
    return [
        {
            "environment": e.environment,
            "policy": {"prune": e.policy.prune, "allowEmpty": e.policy.allow_empty, "adopt": e.policy.adopt},
            "servers": [spec_to_dict(s) for s in e.servers],
            "source": _source(e.source),
        }
        for e in desired.environments
    ]


def desired_from_dict(data: Any, digest: str) -> Desired:
    """The saved desired state; PlanError when it is missing (a plan saved by an older reconciler)."""
    if not isinstance(data, list):
        raise PlanError(
            "saved plan carries no desired state (made by an older reconciler, which re-read the manifests at "
            "apply time); make a new plan with `plan --out`"
        )
    try:
        environments = []
        for e in data:
            policy = e.get("policy") or {}
            source = _source_from(e.get("source"))
            environments.append(
                EnvironmentSpec(
                    environment=str(e["environment"]),
                    servers=tuple(spec_from_dict(s) for s in e["servers"]),
                    policy=EnvironmentPolicy(
                        prune=bool(policy.get("prune", False)),
                        allow_empty=bool(policy.get("allowEmpty", False)),
                        adopt=bool(policy.get("adopt", False)),
                    ),
                    source=source if source is not None else SourceRef("<memory>", 0),
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanError(f"saved plan's desired state is not valid: {exc!r}; make a new plan") from exc
    return Desired(environments=tuple(environments), digest=digest)


def plan_to_dict(
    plan: Plan,
    *,
    basis: Mapping[str, Any] | None = None,
    scope: PlanScope | None = None,
    desired: Desired | None = None,
    verdict: Verdict | None = None,
) -> dict[str, Any]:
    """``plan --format json`` (and ``show``) carry the scope and, with ``verdict``, whether the plan is complete
    and, if not, what it could not see or settle; a saved plan (``--out``) also its basis and the desired state
    of the environments in scope, so that it applies with no manifest at hand."""
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_at": plan.created_at.isoformat() if plan.created_at is not None else None,
        "manifest_digest": plan.manifest_digest,
        "summary": {
            **summary_counts(plan),
            "total": len(plan.steps),
            "destructive": sum(1 for s in plan.steps if s.destructive),
            "notices": len(plan.notices),
        },
        "steps": [step_to_dict(s) for s in plan.steps],
        "notices": [notice_to_dict(n) for n in plan.notices],
        "errors": list(plan.errors),
    }
    if plan.health:
        data["health"] = [health_to_dict(h) for h in plan.health]
    if plan.rollouts:
        data["rollouts"] = [rollout_to_dict(r) for r in plan.rollouts]
    if verdict is not None:
        data.update(verdict_to_dict(verdict))
    if scope is not None:
        data["scope"] = scope_to_dict(scope)
    if basis is not None:
        data["basis"] = dict(basis)
    if desired is not None:
        data["desired"] = desired_to_dict(desired)
    return data


def _source_from(data: Any) -> SourceRef | None:
    if data is None:
        return None
    return SourceRef(str(data["file"]), int(data["line"]), int(data.get("column", 1)))


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def spec_from_dict(data: Mapping[str, Any]) -> ServerSpec:
    env: list[tuple[str, EnvValue]] = []
    for item in data.get("env", []):
        if "secretFromEnv" in item:
            env.append((str(item["name"]), SecretRef(str(item["secretFromEnv"]))))
        else:
            env.append((str(item["name"]), str(item["value"])))
    transport = data["transport"]
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}")
    state = data.get("state", "running")
    if state not in ("running", "stopped"):
        raise ValueError(f"unknown state {state!r}")
    source = _source_from(data.get("source"))
    return ServerSpec(
        name=str(data["name"]),
        image=str(data["image"]),
        transport=transport,
        endpoint=_opt(data.get("endpoint")),
        port=_opt_int(data.get("port")),
        host_port=_opt_int(data.get("host_port")),
        host_ip=_opt(data.get("host_ip")),
        capabilities=tuple(str(c) for c in data.get("capabilities", [])),
        state=state,
        env=tuple(env),
        protect=bool(data.get("protect", False)),
        source=source if source is not None else SourceRef("<memory>", 0),
        **_readiness_from_dict(data),
    )


def step_from_dict(data: Mapping[str, Any]) -> Step:
    return Step(
        environment_id=str(data["environment_id"]),
        environment_name=str(data["environment_name"]),
        server=str(data["server"]),
        action=Action(data["action"]),
        reason=str(data["reason"]),
        changes=tuple(Change(str(c["field"]), _opt(c.get("old")), _opt(c.get("new"))) for c in data["changes"]),
        source=_source_from(data.get("source")),
        desired=spec_from_dict(data["desired"]) if data.get("desired") is not None else None,
        instance_id=_opt(data.get("instance_id")),
        status_from=_opt(data.get("status_from")),
        status_to=_opt(data.get("status_to")),
        spec_hash=_opt(data.get("spec_hash")),
    )


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """Rebuild a plan from ``plan_to_dict`` output; PlanError names what is wrong with it."""
    try:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PlanError(f"saved plan has format_version {version!r}; this reconciler reads {FORMAT_VERSION}")
        created = data.get("created_at")
        return Plan(
            steps=tuple(step_from_dict(s) for s in data["steps"]),
            notices=tuple(
                Notice(
                    environment_id=str(n["environment_id"]),
                    environment_name=str(n["environment_name"]),
                    server=_opt(n.get("server")),
                    kind=NoticeKind(n["kind"]),
                    message=str(n["message"]),
                    source=_source_from(n.get("source")),
                )
                for n in data.get("notices", [])
            ),
            created_at=datetime.fromisoformat(created) if created else None,
            manifest_digest=str(data.get("manifest_digest", "")),
            errors=tuple(str(e) for e in data.get("errors", [])),
            rollouts=tuple(rollout_from_dict(r) for r in data.get("rollouts", [])),
            health=tuple(health_from_dict(h) for h in data.get("health", [])),
        )
    except PlanError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanError(f"saved plan is not a valid plan.v1 document: {exc!r}") from exc
