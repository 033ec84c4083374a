"""The simulated image registry: what each image EXPOSEs, how long its pull takes, whether it exists.

The real agent never sets ``ExposedPorts``, so Docker publishes a ``PortBindings`` entry only for a port the
image itself EXPOSEs. A simulated image declares that here (one registry per simulator, shared by its
toolboxes, set by ``--image`` flags, the admin route ``POST /__sim/images`` or ``Simulator.set_image``).

An image nobody declared follows ``unknown_expose``: ``"bound"`` (the default) means it EXPOSEs every
container port it is bound to, so a binding is published as asked; ``"none"`` means it EXPOSEs nothing.
"bound" is the default because most tests are about something other than ports and must see the port they
declared; a test about unpublished ports declares its image (``exposes=[]``) or picks ``"none"``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

UNKNOWN_EXPOSE = ("bound", "none")


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
    ) -> ImageSpec:
        spec = ImageSpec(
            None if exposes is None else tuple(port_key(p) for p in exposes),
            None if pull_delay is None else float(pull_delay),
            bool(missing),
        )
        with self._lock:
            self._images[image] = spec
        return spec

    def get(self, image: str) -> ImageSpec:
        with self._lock:
            return self._images.get(image, ImageSpec())

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
        return self.declare(
            image,
            exposes=exposes,
            pull_delay=None if delay is None else float(delay),
            missing=bool(data.get("missing", False)),
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
                    }
                    for name, s in self._images.items()
                },
            }


def parse_image_flag(text: str) -> tuple[str, ImageSpec]:
    """``IMAGE=PORTS`` from the command line: ``mcp/fetch:1=none``, ``ctx:1=8080,9090/udp``,
    ``slow:1=8080;pull=30`` (a pull delay in seconds), ``gone:1=missing``."""
    image, sep, rest = text.partition("=")
    if not sep or not image:
        raise ValueError(f"--image {text!r} is not IMAGE=PORTS (PORTS: none, missing, or 8080,9090/udp)")
    exposes: tuple[str, ...] | None = None
    delay: float | None = None
    missing = False
    for raw in rest.split(";"):
        part = raw.strip()
        if part.startswith("pull="):
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
    return image, ImageSpec(exposes, delay, missing)
