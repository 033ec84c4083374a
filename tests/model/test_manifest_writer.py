"""The manifest text ``reconciler import`` writes loads back, through the real loader, into the same spec."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconciler.model.loader import load_manifests
from reconciler.model.manifest_writer import manifest_text
from reconciler.model.spec import EnvironmentPolicy, EnvironmentSpec, SecretRef, ServerSpec

SPEC = EnvironmentSpec(
    environment="research-toolbox",
    servers=(
        ServerSpec(
            "fetch",
            "ghcr.io/acme/fetch:1.4.0",
            "streamable-http",
            "/mcp",
            8080,
            31080,
            "127.0.0.1",
            ("tools", "resources"),
            env=(
                ("API_TOKEN", SecretRef("FETCH_API_TOKEN")),
                ("MODE", "yes"),
                ("EMPTY", ""),
                ("COLON", "a: b #c"),
            ),
        ),
        ServerSpec("parked", "ghcr.io/acme/parked:1", "stdio", state="stopped", protect=True),
    ),
    policy=EnvironmentPolicy(adopt=True),
)


def _plain(spec: EnvironmentSpec) -> EnvironmentSpec:
    """Without source positions, which the loader adds."""
    servers = tuple(
        replace(s, env=tuple((k, SecretRef(v.env_var) if isinstance(v, SecretRef) else v) for k, v in s.env))
        for s in spec.servers
    )
    return EnvironmentSpec(spec.environment, servers, spec.policy)


def test_written_text_loads_back_into_the_same_spec(tmp_path: Path) -> None:
    path = tmp_path / "research-toolbox.yaml"
    path.write_text(manifest_text(SPEC, ["imported\nfrom the rows"]))
    loaded = load_manifests([path]).environments
    assert len(loaded) == 1 and _plain(loaded[0]) == _plain(SPEC)
    text = path.read_text()
    assert text.startswith("# imported from the rows\napiVersion: mcp-reconciler/v1\n")
    assert "secretFromEnv: FETCH_API_TOKEN" in text and "adopt: true" in text


def test_defaults_are_left_out() -> None:
    text = manifest_text(EnvironmentSpec("tb", (ServerSpec("time", "mcp/time:1", "stdio"),)))
    assert text.endswith("servers:\n- name: time\n  image: mcp/time:1\n  transport: stdio\n")
    assert "policy:" not in text
