"""The per-server host address (Docker's HostIp): loaded, validated, hashed only when not the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ManifestError
from reconciler.model.loader import load_manifests
from reconciler.model.spec import DEFAULT_HOST_IP, ServerSpec
from reconciler.model.spec_hash import spec_hash
from reconciler.model.stored import stored_config

DOC = """\
apiVersion: mcp-reconciler/v1
kind: Toolbox
environment: tb
servers:
  - name: ctx
    image: ghcr.io/u/ctx:1
    transport: sse
    port: 8080
{extra}"""


def _load(tmp_path: Path, extra: str) -> ServerSpec:
    path = tmp_path / "m.yaml"
    path.write_text(DOC.format(extra=extra))
    return load_manifests([path]).environments[0].servers[0]


def test_host_ip_is_loaded_and_defaults_to_every_interface(tmp_path: Path) -> None:
    assert _load(tmp_path, "    hostPort: 31001\n    hostIp: 127.0.0.1\n").host_ip == "127.0.0.1"
    plain = _load(tmp_path, "    hostPort: 31001\n")
    assert plain.host_ip is None and plain.effective_host_ip == DEFAULT_HOST_IP == "0.0.0.0"


@pytest.mark.parametrize(
    ("extra", "said"),
    [("    hostIp: 127.0.0.1\n", "hostPort"), ("    hostPort: 31001\n    hostIp: localhost\n", "hostIp")],
)
def test_host_ip_needs_a_host_port_and_an_address(tmp_path: Path, extra: str, said: str) -> None:
    with pytest.raises(ManifestError) as err:
        _load(tmp_path, extra)
    assert "m.yaml:" in str(err.value) and said in str(err.value)


def test_the_default_host_ip_leaves_the_spec_hash_as_it_was() -> None:
    base = ServerSpec(name="ctx", image="ghcr.io/u/ctx:1", transport="sse", port=8080, host_port=31001)
    same = ServerSpec(name="ctx", image="ghcr.io/u/ctx:1", transport="sse", port=8080, host_port=31001,
                      host_ip="0.0.0.0")  # fmt: skip
    local = ServerSpec(name="ctx", image="ghcr.io/u/ctx:1", transport="sse", port=8080, host_port=31001,
                       host_ip="127.0.0.1")  # fmt: skip
    assert spec_hash(base, {}) == spec_hash(same, {}) != spec_hash(local, {})
    assert stored_config(local, "h", {})["HostConfig"] == {
        "PortBindings": {"8080/tcp": [{"HostPort": "31001", "HostIp": "127.0.0.1"}]}
    }
    assert "HostIp" not in str(stored_config(base, "h", {}))
