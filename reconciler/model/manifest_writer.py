"""A manifest's YAML text from a desired ``EnvironmentSpec`` (``reconciler import`` writes it).

Pure. Fields at their defaults are left out, keys come in the order the README documents them, and env values
that are ``SecretRef`` are written as ``{secretFromEnv: VAR}``: a spec carries no secret value, so neither does
the text. The text loads back through ``model.loader`` into the same spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from reconciler.model.spec import EnvironmentSpec, SecretRef, ServerSpec

API_VERSION = "mcp-reconciler/v1"
KIND = "Toolbox"


def server_document(server: ServerSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": server.name, "image": server.image, "transport": server.transport}
    if server.endpoint is not None:
        doc["endpoint"] = server.endpoint
    if server.port is not None:
        doc["port"] = server.port
        if server.host_port is not None:
            doc["hostPort"] = server.host_port
            if server.host_ip is not None:
                doc["hostIp"] = server.host_ip
    if server.capabilities:
        doc["capabilities"] = list(server.capabilities)
    if server.state != "running":
        doc["state"] = server.state
    if server.env:
        doc["env"] = {
            key: {"secretFromEnv": value.env_var} if isinstance(value, SecretRef) else value
            for key, value in server.env
        }
    if server.protect:
        doc["protect"] = True
    return doc


def environment_document(spec: EnvironmentSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "environment": spec.environment}
    policy: dict[str, bool] = {}
    if spec.policy.prune:
        policy["prune"] = True
    if spec.policy.allow_empty:
        policy["allowEmpty"] = True
    if spec.policy.adopt:
        policy["adopt"] = True
    if policy:
        doc["policy"] = policy
    doc["servers"] = [server_document(s) for s in spec.servers]
    return doc


def manifest_text(spec: EnvironmentSpec, comments: Sequence[str] = ()) -> str:
    """The document as YAML, after ``comments`` (one ``# `` line each; newlines in them are flattened)."""
    head = "".join(f"# {' '.join(c.split())}\n" for c in comments)
    body = yaml.safe_dump(
        environment_document(spec), sort_keys=False, default_flow_style=False, allow_unicode=True, width=120
    )
    return head + body
