"""The simulated image registry: what each image EXPOSEs, how long its pull takes, whether it exists.

The real agent never sets ``ExposedPorts``, so Docker publishes a ``PortBindings`` entry only for a port the
image itself EXPOSEs. A simulated image declares that here (one registry per simulator, shared by its
toolboxes, set by ``--image`` flags, the admin route ``POST /__sim/images`` or ``Simulator.set_image``).

An image nobody declared follows ``unknown_expose``: ``"bound"`` (the default) means it EXPOSEs every
container port it is bound to, so a binding is published as asked; ``"none"`` means it EXPOSEs nothing.
"bound" is the default because most tests are about something other than ports and must see the port they
declared; a test about unpublished ports declares its image (``exposes=[]``) or picks ``"none"``.

An image also says how the MCP server inside it behaves (``McpBehaviour``): the tools, resources and prompts
it lists, and its faults (``mcp_server`` serves it on the container's published host ports).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

UNKNOWN_EXPOSE = ("bound", "none")
# What goes wrong with an image's MCP server: nothing; it accepts and never answers; it answers initialize
# with a protocol version no client speaks; it answers initialize with an error; nothing listens at all.
MCP_FAULTS = ("none", "no-answer", "wrong-protocol", "handshake-error", "broken")
MCP_ANSWERS = ("json", "sse")
WRONG_PROTOCOL_VERSION = "1999-01-01"


@dataclass(frozen=True)
class McpBehaviour:
    """How a simulated image's MCP server answers (on every published host port of a running container)."""

    fault: str = "none"  # one of MCP_FAULTS
    slow_start: float = 0.0  # seconds (simulator clock) after the container starts before the server answers
    tools: tuple[str, ...] = ("echo",)
    resources: tuple[str, ...] = ()  # URIs
    prompts: tuple[str, ...] = ()
    capabilities: tuple[str, ...] | None = None  # announced; None: tools, plus resources/prompts when listed
    answers: str = "json"  # how a streamable-http request is answered: one JSON body, or an SSE stream
    health_path: str = "/health"  # GET here answers 200 (the ``http`` readiness kind)
    latency: float = 0.0  # seconds added before each answer (benchmarks: a server across a network)

    def __post_init__(self) -> None:
        if self.fault not in MCP_FAULTS:
            raise ValueError(f"unknown MCP fault {self.fault!r} (one of {', '.join(MCP_FAULTS)})")
        if self.answers not in MCP_ANSWERS:
            raise ValueError(f"unknown MCP answer style {self.answers!r} (json or sse)")
        if self.slow_start < 0 or self.latency < 0:
            raise ValueError("slow_start and latency must be 0 or more seconds")

    @property
    def announced(self) -> tuple[str, ...]:
        if self.capabilities is not None:
            return self.capabilities
        listed = (("resources", self.resources), ("prompts", self.prompts))
        return ("tools", *(name for name, items in listed if items))

    def updated(self, data: Mapping[str, Any]) -> McpBehaviour:
        """This behaviour with the fields ``data`` names changed (the admin route's body, or Python keywords)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MCP setting {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("tools", "resources", "prompts"):
                changes[key] = tuple(str(v) for v in value or ())
            elif key == "capabilities":
                changes[key] = None if value is None else tuple(str(v) for v in value)
            elif key in ("slow_start", "latency"):
                changes[key] = float(value)
            else:
                changes[key] = str(value)
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "slow_start": self.slow_start,
            "tools": list(self.tools),
            "resources": list(self.resources),
            "prompts": list(self.prompts),
            "capabilities": list(self.announced),
            "answers": self.answers,
            "health_path": self.health_path,
            "latency": self.latency,
        }


def port_key(port: str | int) -> str:
    """``"8080"`` -> ``"8080/tcp"`` (Docker's key for a container port)."""
    text = str(port).strip()
    return text if "/" in text else f"{text}/tcp"


@dataclass(frozen=True)
class ImageSpec:
    """One simulated image. ``exposes`` None: not declared (``unknown_expose`` applies)."""

    exposes: tuple[str, ...] | None = None
    pull_delay: float | None = None  # seconds; None: the toolbox's pull delay
    missing: bool = False  # the registry has no such image: the pull fails like Docker's 404
    mcp: McpBehaviour = McpBehaviour()


class ImageRegistry:
    def __init__(self, images: Mapping[str, ImageSpec] | None = None, unknown_expose: str = "bound") -> None:
        if unknown_expose not in UNKNOWN_EXPOSE:
            raise ValueError(f"unknown image exposure default {unknown_expose!r} (bound or none)")
        self.unknown_expose = unknown_expose
        self._images: dict[str, ImageSpec] = dict(images or {})
        self._lock = threading.Lock()

    def declare(
        self,
        image: str,
        *,
        exposes: Iterable[str | int] | None = None,
        pull_delay: float | None = None,
        missing: bool = False,
        mcp: McpBehaviour | None = None,
    ) -> ImageSpec:
        spec = ImageSpec(
            None if exposes is None else tuple(port_key(p) for p in exposes),
            None if pull_delay is None else float(pull_delay),
            bool(missing),
            self.get(image).mcp if mcp is None else mcp,
        )
        with self._lock:
            self._images[image] = spec
        return spec

    def get(self, image: str) -> ImageSpec:
        with self._lock:
            return self._images.get(image, ImageSpec())

    def set_mcp(self, image: str, data: Mapping[str, Any]) -> McpBehaviour:
        """Change how ``image``'s MCP server behaves (the fields ``data`` names); the rest of its spec stays."""
        with self._lock:
            spec = self._images.get(image, ImageSpec())
            behaviour = spec.mcp.updated(data)
            self._images[image] = replace(spec, mcp=behaviour)
        return behaviour

    def exposes(self, image: str, bound: Iterable[str]) -> set[str]:
        """The container ports ``image`` EXPOSEs, given the ports a deploy binds."""
        spec = self.get(image)
        if spec.exposes is not None:
            return set(spec.exposes)
        return {port_key(p) for p in bound} if self.unknown_expose == "bound" else set()

    def update(self, data: Mapping[str, Any]) -> ImageSpec:
        """The admin route's body: ``{"image", "exposes": [...] | null, "pull_delay": s, "missing": bool}``."""
        image = data.get("image")
        if not isinstance(image, str) or not image:
            raise ValueError("an image entry needs 'image'")
        exposes = data.get("exposes")
        if exposes is not None and not isinstance(exposes, list):
            raise ValueError("'exposes' must be a list of container ports")
        delay = data.get("pull_delay")
        mcp = data.get("mcp")
        if mcp is not None and not isinstance(mcp, Mapping):
            raise ValueError("'mcp' must be an object of MCP settings")
        return self.declare(
            image,
            exposes=exposes,
            pull_delay=None if delay is None else float(delay),
            missing=bool(data.get("missing", False)),
            mcp=None if mcp is None else McpBehaviour().updated(mcp),
        )

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "unknown_expose": self.unknown_expose,
                "images": {
                    name: {
                        "exposes": None if s.exposes is None else list(s.exposes),
                        "pull_delay": s.pull_delay,
                        "missing": s.missing,
                        "mcp": s.mcp.as_dict(),
                    }
                    for name, s in self._images.items()
                },
            }


def parse_image_flag(text: str) -> tuple[str, ImageSpec]:
    """``IMAGE=PORTS`` from the command line: ``mcp/fetch:1=none``, ``ctx:1=8080,9090/udp``,
    ``slow:1=8080;pull=30`` (a pull delay in seconds), ``gone:1=missing``, ``bad:2=8080;broken`` (its MCP
    server never answers), ``x:1=8080;mcp=handshake-error`` (any of MCP_FAULTS), ``x:2=8080;tools=a,b``."""
    image, sep, rest = text.partition("=")
    if not sep or not image:
        raise ValueError(f"--image {text!r} is not IMAGE=PORTS (PORTS: none, missing, or 8080,9090/udp)")
    exposes: tuple[str, ...] | None = None
    delay: float | None = None
    missing = False
    mcp: dict[str, Any] = {}
    for raw in rest.split(";"):
        part = raw.strip()
        if part == "broken":
            mcp["fault"] = "broken"
        elif part.startswith("mcp="):
            mcp["fault"] = part[4:]
        elif part.startswith("tools="):
            mcp["tools"] = [t for t in part[6:].split(",") if t]
        elif part.startswith("pull="):
            try:
                delay = float(part[5:])
            except ValueError:
                raise ValueError(f"--image {text!r}: pull= needs seconds") from None
        elif part == "missing":
            missing = True
        elif part in ("none", ""):
            exposes = ()
        else:
            ports = [p.strip() for p in part.split(",") if p.strip()]
            if not all(p.partition("/")[0].isdigit() for p in ports):
                raise ValueError(f"--image {text!r}: ports must be numbers like 8080 or 8080/tcp")
            exposes = tuple(port_key(p) for p in ports)
    return image, ImageSpec(exposes, delay, missing, McpBehaviour().updated(mcp))
