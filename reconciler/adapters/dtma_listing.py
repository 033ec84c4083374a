"""Pure parsing of the three DTMA listing shapes into ``LiveListing`` (docs/architecture.md: "The DTMA agent's
behaviours the client copes with").

Tolerant where it reads: unknown Docker states become ``unknown`` (keeping what the agent said), ports come
in Docker's raw capitalised form, in snake_case, or as the deploy answer's port map. A body that is not one
of the shapes raises ``DtmaResponseError``: a listing we cannot read is never taken as "no containers".
An agent that cannot reach Docker answers ``tool_instances: [{"error": ...}]``: that raises
``DtmaDockerUnavailableError``, so the toolbox is unobserved, never empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from reconciler.adapters.dtma_protocol import bounded
from reconciler.core.observed import (
    CONTAINER_STATES,
    ContainerState,
    ListingShape,
    LiveContainer,
    LiveListing,
    LivePort,
)
from reconciler.errors import DtmaDockerUnavailableError, DtmaResponseError

_SHOWN = 80  # characters of an agent's value kept in a message or a raw state


def _shown(value: Any) -> str:
    return bounded(repr(value), _SHOWN)


def detect_shape(body: Any) -> ListingShape:
    """Which of the shapes a, b, c this listing body is."""
    if not isinstance(body, Mapping) or not isinstance(body.get("tool_instances"), list):
        raise DtmaResponseError("DTMA listing has no 'tool_instances' list")
    items = [i for i in body["tool_instances"] if type(i) is dict or isinstance(i, Mapping)]
    if any("names" in i for i in items):
        return "b"
    if "dtma_version" in body:
        return "a"
    if any("image" in i or "ports" in i for i in items):
        return "c"
    if "service" in body or "version" in body:
        # An empty (or minimal) newer-agent envelope: b and c share it and parse the same way when empty.
        return "c" if not items else "b"
    return "a"


# Each state as agents spell it already (the common case: one dict look-up, no strip/lower).
_EXACT_STATES: dict[str, tuple[ContainerState, None]] = {
    s: (cast(ContainerState, s), None) for s in CONTAINER_STATES
}


def parse_state(raw: Any) -> tuple[ContainerState, str | None]:
    """A Docker state as the ContainerState literal, and the raw text when it had to become unknown."""
    if type(raw) is str:
        found = _EXACT_STATES.get(raw)
        if found is not None:
            return found
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text is not None and text in CONTAINER_STATES:
        return cast(ContainerState, text), None
    return "unknown", None if raw is None else bounded(str(raw), _SHOWN)


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DtmaResponseError(f"DTMA port value {_shown(value)} is not a number")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise DtmaResponseError(f"DTMA port value {_shown(value)} is not a number") from exc


def parse_ports(raw: Any) -> tuple[LivePort, ...]:
    """Ports in any of the three forms the agents use, sorted and without duplicates."""
    ports: set[LivePort] = set()
    if raw is None or (not raw and type(raw) is list):
        return ()
    if type(raw) is list:
        fast = [_docker_port(p) for p in raw]
        if None not in fast:  # Docker's own form with well-typed values: the common case, read directly
            found = cast(list[LivePort], fast)
            return tuple(found) if len(found) < 2 else tuple(sorted(set(found), key=_port_order))
    if isinstance(raw, Mapping):
        # {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "31001"}]} (deploy answer / Docker inspect)
        for key, bindings in raw.items():
            port_text, _, proto = str(key).partition("/")
            container_port = _int_or_none(port_text)
            if container_port is None:
                raise DtmaResponseError(f"DTMA port key {_shown(key)} has no port number")
            if not bindings:
                ports.add(LivePort(container_port, None, proto or "tcp", None))
                continue
            if not isinstance(bindings, list):
                raise DtmaResponseError(f"DTMA port bindings for {_shown(key)} are not a list")
            for b in bindings:
                if not isinstance(b, Mapping):
                    raise DtmaResponseError(f"DTMA port binding for {_shown(key)} is not an object")
                ports.add(
                    LivePort(container_port, _int_or_none(b.get("HostPort")), proto or "tcp", b.get("HostIp"))
                )
    elif isinstance(raw, list):
        for p in raw:
            if not isinstance(p, Mapping):
                raise DtmaResponseError("DTMA port entry is not an object")
            private = p.get("PrivatePort", p.get("private_port"))
            container_port = _int_or_none(private)
            if container_port is None:
                raise DtmaResponseError("DTMA port entry has no private port")
            public = _int_or_none(p.get("PublicPort", p.get("public_port")))
            proto = p.get("Type", p.get("type")) or "tcp"
            ip = p.get("IP", p.get("ip"))
            ports.add(LivePort(container_port, public, str(proto), None if ip is None else str(ip)))
    else:
        raise DtmaResponseError("DTMA ports are neither a list nor a port map")
    return tuple(sorted(ports, key=_port_order))


def _port_order(p: LivePort) -> tuple[int, int, str, str]:
    return (p.container_port, p.host_port or 0, p.protocol, p.host_ip or "")


def _docker_port(p: Any) -> LivePort | None:
    """A port entry in Docker's raw form (``PrivatePort``, ``PublicPort``, ``Type``, ``IP``) whose values have
    the expected types, else None (the general reader below then handles, or refuses, it)."""
    if type(p) is not dict:
        return None
    private, public, proto, ip = p.get("PrivatePort"), p.get("PublicPort"), p.get("Type", "tcp"), p.get("IP")
    if type(private) is not int or (public is not None and type(public) is not int):
        return None
    if type(proto) is not str or not proto or (ip is not None and type(ip) is not str):
        return None
    return LivePort(private, public, proto, ip)


def _opt_str(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _parse_item(item: Any, shape: ListingShape) -> LiveContainer:
    if type(item) is dict and shape != "b":  # the common case (JSON objects), read with few calls
        iname = item.get("instance_name_on_toolbox")
        if type(iname) is str and iname:
            get = item.get
            state, raw_state = parse_state(get("status"))
            image, instance_id, container_id = get("image"), get("account_tool_instance_id"), get("container_id")
            return LiveContainer(
                name=iname.lstrip("/") if iname[0] == "/" else iname,
                state=state,
                image=image if image is None or type(image) is str else str(image),
                instance_id=instance_id if instance_id is None or type(instance_id) is str else str(instance_id),
                container_id=container_id
                if container_id is None or type(container_id) is str
                else str(container_id),
                ports=parse_ports(get("ports")) if shape == "c" else (),
                raw_state=raw_state,
            )
    if not isinstance(item, Mapping):
        raise DtmaResponseError(f"DTMA listing (shape {shape}) has an entry that is not an object")
    if shape == "b":
        names = item.get("names")
        if not isinstance(names, list) or not names or not isinstance(names[0], str):
            raise DtmaResponseError("DTMA listing (shape b) has a container without names")
        name = names[0].lstrip("/")
        state, raw_state = parse_state(item.get("state"))
        return LiveContainer(
            name=name,
            state=state,
            image=_opt_str(item.get("image")),
            instance_id=None,
            container_id=_opt_str(item.get("id")),
            ports=parse_ports(item.get("ports")),
            raw_state=raw_state,
        )
    iname = item.get("instance_name_on_toolbox")
    if not isinstance(iname, str) or not iname:
        raise DtmaResponseError(f"DTMA listing (shape {shape}) has an entry without instance_name_on_toolbox")
    state, raw_state = parse_state(item.get("status"))
    return LiveContainer(
        name=iname.lstrip("/"),
        state=state,
        image=_opt_str(item.get("image")),
        instance_id=_opt_str(item.get("account_tool_instance_id")),
        container_id=_opt_str(item.get("container_id")),
        ports=parse_ports(item.get("ports")) if shape == "c" else (),
        raw_state=raw_state,
    )


def _docker_error(items: list[Any]) -> str | None:
    """The agent's error text when the listing stands for "Docker unreachable" instead of containers."""
    for item in items:
        # type() first: JSON objects are dicts, and an ABC check per container was a visible share of a listing
        if (
            (type(item) is dict or isinstance(item, Mapping))
            and "error" in item
            and not any(k in item for k in ("names", "instance_name_on_toolbox", "id", "container_id"))
        ):
            return str(item["error"])
    return None


def parse_listing(environment_id: str, body: Any, shape: ListingShape | None = None) -> LiveListing:
    """Parse a listing body (already decoded JSON) of any shape into a ``LiveListing``."""
    if not (type(body) is dict or isinstance(body, Mapping)) or not isinstance(
        items := body.get("tool_instances"), list
    ):
        raise DtmaResponseError(f"DTMA listing of environment {environment_id} has no 'tool_instances' list")
    docker_error = _docker_error(items)
    if docker_error is not None:
        raise DtmaDockerUnavailableError(
            f"DTMA listing of environment {environment_id}: the agent cannot reach Docker on the toolbox "
            f"({bounded(docker_error)})"
        )
    detected = shape or detect_shape(body)
    containers = tuple([_parse_item(i, detected) for i in items])
    version = body.get("dtma_version") if detected == "a" else body.get("version")
    return LiveListing(
        environment_id=environment_id,
        containers=containers,
        shape=detected,
        dtma_version=_opt_str(version),
    )
