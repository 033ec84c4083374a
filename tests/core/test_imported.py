"""What ``reconciler import`` declares for a toolbox, from rows and a listing (pure)."""

from __future__ import annotations

from reconciler.core.imported import import_environment
from reconciler.core.observed import LiveContainer, LiveListing, LivePort, RecordedEnvironment
from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.model.spec_hash import Fingerprints, spec_hash
from reconciler.model.stored import stored_config
from tests.core.golden_io import instance_from_config

ENV = RecordedEnvironment("env-1", "research-toolbox", "10.0.0.1", "active")
FPS = Fingerprints({"VAULT_TOKEN": "hmac-sha256:aaaa"}, key_id="k1")


def _listing(*containers: LiveContainer, shape: str = "c") -> LiveListing:
    return LiveListing("env-1", containers, shape)  # type: ignore[arg-type]


def test_a_managed_row_gives_back_its_declared_spec_with_secrets_as_references() -> None:
    declared = ServerSpec("vault", "ghcr.io/acme/vault:2", "sse", "/sse", 8080, 31080, capabilities=("tools",),
                          env=(("TOKEN", SecretRef("VAULT_TOKEN")), ("LEVEL", "debug")))  # fmt: skip
    config = stored_config(declared, spec_hash(declared, FPS), FPS)
    row = instance_from_config("i-1", "env-1", "vault", "running", config)
    both = (LivePort(8080, 31080, "tcp", "0.0.0.0"), LivePort(8080, 31080, "tcp", "::"))
    live = LiveContainer("vault", "running", "ghcr.io/acme/vault:2", "i-1", ports=both)
    result = import_environment(ENV, [row], _listing(live))
    (server,) = result.spec.servers
    assert server.env == (("TOKEN", SecretRef("VAULT_TOKEN")), ("LEVEL", "debug"))
    assert (server.transport, server.endpoint, server.port, server.host_port, server.host_ip) == (
        "sse", "/sse", 8080, 31080, None,
    )  # fmt: skip
    assert server.capabilities == ("tools",) and result.secret_vars == (("VAULT_TOKEN", "vault env.TOKEN"),)
    # the same secret value under the written variable: the same spec hash, so no replace is planned
    assert spec_hash(server, {"VAULT_TOKEN": "hmac-sha256:aaaa"}) == row.spec_hash


def test_secret_looking_keys_of_a_foreign_row_are_never_written_and_unknowns_are_noted() -> None:
    env = {"Env": ["GITHUB_TOKEN=ghp_real", "DB_PASSWORD=pw", "REGION=eu"]}
    row = instance_from_config("i-2", "env-1", "legacy", "active", env, "legacy:1")
    listing = _listing(
        LiveContainer("legacy", "exited", "legacy:1", "i-2"),
        LiveContainer("no-image", "running"),
        LiveContainer("stranger", "running", "x:1", "other-id"),
        LiveContainer("gone", "not_found"),
    )
    result = import_environment(ENV, [row], listing)
    servers = {s.name: s for s in result.spec.servers}
    assert sorted(servers) == ["legacy", "stranger"]
    legacy = servers["legacy"]
    assert legacy.env == (("GITHUB_TOKEN", SecretRef("LEGACY_GITHUB_TOKEN")),
                          ("DB_PASSWORD", SecretRef("LEGACY_DB_PASSWORD")), ("REGION", "eu"))  # fmt: skip
    assert legacy.state == "stopped" and legacy.transport == "stdio"
    assert "ghp_real" not in repr(result) and "pw'" not in repr(result)
    assert any("no-image" in n for n in result.notes) and any("transport not recorded" in n for n in result.notes)
    assert servers["stranger"].env == ()  # another instance's container never takes this row's env


def test_a_port_published_on_one_address_keeps_it() -> None:
    live = LiveContainer("local", "running", "x:1", ports=(LivePort(9000, 39000, "tcp", "127.0.0.1"),))
    (server,) = import_environment(ENV, [], _listing(live)).spec.servers
    assert (server.port, server.host_port, server.host_ip, server.transport) == (9000, 39000, "127.0.0.1",
                                                                               "streamable-http")  # fmt: skip
