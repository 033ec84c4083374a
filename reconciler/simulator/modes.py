"""Which agent a simulated toolbox plays: one of the two real lineages, or the kinder stand-in.

- ``newer``: Agentopia's ``dtma-agent`` lineage (Express + dockerode), as observed on real Docker: public
  ``GET /status`` listing every container on the host (shape b), authenticated ``GET /tools/status`` with
  instance ids (shape c), Docker errors wrapped in 500, an in-memory name registry.
- ``older``: the ``dtma/`` lineage: ``GET /status`` behind the token listing only what it deployed (shape a,
  ``not_found`` for a container removed behind its back), no ``/tools/status``, Docker's status codes passed
  through (a stop of a stopped container is a bare 304).
- ``kind``: the simulator's original, kinder agent: one listing shape chosen by ``shape``, stop of a stopped
  container is fine, no pull delay, every bound port published. Kept, under this name, for tests about
  something else that want the old answers; never the default.
"""

from __future__ import annotations

MODES = ("newer", "older", "kind")
# The simulator's default agent: the real newer one, so that the suite meets what deployed toolboxes answer.
# Tests and `reconciler sim` pick another with `mode=` / `--mode`.
DEFAULT_MODE = "newer"
SHAPES = ("a", "b", "c")
# The listing shapes each real lineage serves: the older agent's /status is shape a; the newer agent serves
# shape b on /status and shape c on /tools/status.
LINEAGE_SHAPES = {"older": ("a",), "newer": ("b", "c")}


class ModeError(ValueError):
    """An unknown mode or shape, or a shape the chosen lineage never serves."""


def resolve_mode(mode: str | None, shape: str | None, default: str = DEFAULT_MODE) -> tuple[str, str]:
    """The (mode, shape) a toolbox runs with.

    A listing shape given without a mode picks the real lineage that serves it (``a`` -> older, ``b``/``c``
    -> newer) when the default is a real lineage, so a test that asks for "the agent whose /status is shape
    a" gets the agent that really answers so. With the kind mode, ``shape`` chooses its one listing shape.
    """
    if mode is not None and mode not in MODES:
        raise ModeError(f"unknown simulator mode {mode!r} (newer, older or kind)")
    if shape is not None and shape not in SHAPES:
        raise ModeError(f"unknown listing shape {shape!r} (a, b or c)")
    if mode is None:
        mode = default
        if shape is not None and mode != "kind":
            mode = "older" if shape == "a" else "newer"
    if mode == "kind":
        return mode, shape or "a"
    served = LINEAGE_SHAPES[mode]
    if shape is not None and shape not in served:
        raise ModeError(f"the {mode} agent never serves listing shape {shape!r} (it serves {', '.join(served)})")
    return mode, shape or served[0]
