"""Builders shared by the store tests."""

from __future__ import annotations

from typing import Any

from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.model.spec_hash import fingerprint_secret, spec_hash
from reconciler.model.stored import stored_config
from reconciler.ports import NewInstance

KEY = b"store-test-hmac-key"


def server(name: str = "ctx", image: str = "ghcr.io/acme/ctx:1.0.0", **kw: Any) -> ServerSpec:
    defaults: dict[str, Any] = {"transport": "sse", "endpoint": "/sse", "port": 8080, "capabilities": ("tools",)}
    defaults.update(kw)
    return ServerSpec(name=name, image=image, **defaults)


def config_for(spec: ServerSpec, secrets: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """(stored config, spec hash) as the executor builds them; ``secrets`` maps env var -> resolved value."""
    fps = {var: fingerprint_secret(KEY, value) for var, value in (secrets or {}).items()}
    digest = spec_hash(spec, fps)
    return stored_config(spec, digest, fps), digest


def new_instance(env_id: str, catalog_id: str, spec: ServerSpec, **kw: Any) -> NewInstance:
    config, _ = config_for(spec, kw.pop("secrets", None))
    return NewInstance(
        environment_id=env_id,
        catalog_id=catalog_id,
        name=spec.name,
        config=config,
        transport=spec.transport,
        endpoint=spec.endpoint,
        capabilities=spec.capabilities,
        **kw,
    )


__all__ = ["KEY", "SecretRef", "config_for", "new_instance", "server"]
