"""The stand-in DTMA agent: a real HTTP server on loopback serving many simulated toolboxes."""

from reconciler.simulator.images import ImageRegistry, ImageSpec
from reconciler.simulator.modes import DEFAULT_MODE, MODES
from reconciler.simulator.server import ADMIN_HEADER, Simulator, SimulatorError, check_loopback
from reconciler.simulator.toolbox import Faults, Toolbox

__all__ = [
    "ADMIN_HEADER",
    "DEFAULT_MODE",
    "MODES",
    "Faults",
    "ImageRegistry",
    "ImageSpec",
    "Simulator",
    "SimulatorError",
    "Toolbox",
    "check_loopback",
]
