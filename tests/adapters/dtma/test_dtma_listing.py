"""Parsing of the recorded listing samples (tests/fixtures/dtma-samples) and of odd inputs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.dtma_listing import detect_shape, parse_listing, parse_ports, parse_state
from reconciler.core.observed import LivePort
from reconciler.errors import DtmaDockerUnavailableError, DtmaResponseError

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "dtma-samples"


def load(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def test_shape_a_sample() -> None:
    listing = parse_listing("env", load("listing-a-status-v2.json"))
    assert listing.shape == "a"
    assert listing.dtma_version == "0.2.3"
    by = listing.by_name()
    assert [c.name for c in listing.containers] == ["context7", "fetch", "github"]
    assert by["context7"].state == "running"
    assert by["context7"].instance_id == "3f0c1c9e-6a51-4f7e-9d0a-0b1b2c3d4e5f"
    assert by["fetch"].state == "exited"
    assert by["github"].state == "not_found"
    assert by["github"].container_id is None


def test_shape_b_sample_strips_slash_and_reads_snake_case_ports() -> None:
    listing = parse_listing("env", load("listing-b-status-v3.json"))
    assert listing.shape == "b"
    assert listing.dtma_version == "1.4.0"
    by = listing.by_name()
    assert set(by) == {"dtma_manager", "agentopia_backend", "context7", "fetch"}
    assert by["context7"].instance_id is None
    assert by["context7"].image == "ghcr.io/upstash/context7-mcp:1.0.6"
    assert by["context7"].ports == (
        LivePort(8080, 31001, "tcp", "0.0.0.0"),
        LivePort(8080, 31001, "tcp", "::"),
    )
    assert by["fetch"].state == "exited"
    assert by["fetch"].ports == ()


def test_shape_c_sample_reads_raw_docker_ports() -> None:
    listing = parse_listing("env", load("listing-c-tools-status-v3.json"))
    assert listing.shape == "c"
    by = listing.by_name()
    assert by["context7"].ports == (LivePort(8080, 31001, "tcp", "0.0.0.0"),)
    assert by["context7"].instance_id == "3f0c1c9e-6a51-4f7e-9d0a-0b1b2c3d4e5f"
    assert by["hand-made"].instance_id is None
    assert by["hand-made"].state == "restarting"


def test_deploy_answer_port_map() -> None:
    ports = parse_ports(load("deploy-201.json")["data"]["ports"])
    assert ports == (LivePort(8080, 31001, "tcp", "0.0.0.0"),)
    assert parse_ports({"9000/udp": None}) == (LivePort(9000, None, "udp", None),)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("running", ("running", None)),
        ("Exited", ("exited", None)),
        ("error_inspecting", ("error_inspecting", None)),
        ("zombie", ("unknown", "zombie")),
        (None, ("unknown", None)),
        (3, ("unknown", "3")),
    ],
)
def test_states(raw: Any, expected: tuple[str, str | None]) -> None:
    assert parse_state(raw) == expected


def test_unknown_state_keeps_raw_state() -> None:
    body = {"dtma_version": "x", "tool_instances": [{"instance_name_on_toolbox": "a", "status": "frozen"}]}
    (c,) = parse_listing("env", body).containers
    assert (c.state, c.raw_state) == ("unknown", "frozen")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"tool_instances": None},
        {"tool_instances": [1]},
        {"dtma_version": "1", "tool_instances": [{}]},
        {"version": "1", "tool_instances": [{"names": []}]},
        {"version": "1", "tool_instances": [{"instance_name_on_toolbox": "a", "ports": [{"PrivatePort": "x"}]}]},
        {"version": "1", "tool_instances": [{"instance_name_on_toolbox": "a", "ports": "8080"}]},
    ],
)
def test_bad_bodies_raise_response_error(body: Any) -> None:
    with pytest.raises(DtmaResponseError):
        parse_listing("env", body)


def test_detect_shape_of_empty_envelopes() -> None:
    assert detect_shape({"dtma_version": "1", "tool_instances": []}) == "a"
    assert detect_shape({"version": "1", "service": "DTMA", "tool_instances": []}) in ("b", "c")
    assert parse_listing("e", {"version": "1", "tool_instances": []}).containers == ()


def test_docker_raw_ports_fast_and_general_forms_agree() -> None:
    raw = [
        {"IP": "::", "PrivatePort": 8080, "PublicPort": 31001, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 31001, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 31001, "Type": "tcp"},  # a duplicate
        {"PrivatePort": 9000, "Type": "udp"},  # exposed, not published
    ]
    expected = (
        LivePort(8080, 31001, "tcp", "0.0.0.0"),
        LivePort(8080, 31001, "tcp", "::"),
        LivePort(9000, None, "udp", None),
    )
    assert parse_ports(raw) == expected
    as_text = [{**p, "PrivatePort": str(p["PrivatePort"])} for p in raw]  # numbers as text: the general reader
    assert parse_ports(as_text) == expected
    with pytest.raises(DtmaResponseError):
        parse_ports([{"PrivatePort": True}])


def test_agent_values_in_messages_and_raw_states_are_bounded() -> None:
    huge = "9" * 5000 + "x"
    with pytest.raises(DtmaResponseError) as caught:
        parse_ports([{"PrivatePort": huge}])
    assert len(str(caught.value)) < 200
    body = {
        "dtma_version": "1",
        "tool_instances": [{"instance_name_on_toolbox": "a", "status": "z" * 5000 + "\n"}],
    }
    (c,) = parse_listing("env", body).containers
    assert c.state == "unknown" and c.raw_state is not None and len(c.raw_state) <= 80 and "\n" not in c.raw_state


class _Frozen(Mapping[str, Any]):
    """A mapping that is not a dict: what a caller other than the JSON decoder may hand over."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _as_mappings(value: Any) -> Any:
    if isinstance(value, dict):
        return _Frozen({k: _as_mappings(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_as_mappings(v) for v in value]
    return value


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("listing-*.json")))
def test_dicts_and_other_mappings_parse_alike(sample: str) -> None:
    # JSON objects take the type() fast paths; any other Mapping the general ones, to the same listing.
    body = load(sample)
    assert parse_listing("env", _as_mappings(body)) == parse_listing("env", body)
    items = body["tool_instances"]
    docker_down = {**body, "tool_instances": [*items, {"error": "connect ENOENT /var/run/docker.sock"}]}
    for form in (docker_down, _as_mappings(docker_down)):
        with pytest.raises(DtmaDockerUnavailableError):
            parse_listing("env", form)
    for ports in ([], None, {}):
        assert parse_ports(ports) == ()
