"""``reconciler sim``: run the DTMA simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType
from typing import Any

from reconciler.errors import ConfigError
from reconciler.simulator import DEFAULT_MODE, MODES, Simulator, SimulatorError
from reconciler.simulator.images import UNKNOWN_EXPOSE, ImageSpec, parse_image_flag

EXAMPLE = """example (two toolboxes for the examples; `reconciler demo` does all this in one go):
  export BACKEND_TO_DTMA_API_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  reconciler sim --listen 127.0.1.1:30000 --toolboxes 2     # prints 127.0.1.1:30000 and 127.0.1.2:30000
  # in a second shell, with the same BACKEND_TO_DTMA_API_KEY exported:
  export DTMA_PORT=30000 CONTEXT7_API_KEY=dummy GITHUB_TOKEN=dummy
  reconciler db migrate
  reconciler db add-environment research-toolbox --address 127.0.1.1
  reconciler db add-environment coding-toolbox --address 127.0.1.2
  reconciler apply examples/

The reconciler reaches every toolbox at ADDRESS:DTMA_PORT, so give each toolbox its own loopback address
on one port (--per address, the default unless HOST is 127.0.0.1 or ::1; all of 127.0.0.0/8 is loopback
on Linux) and register that address with `reconciler db add-environment NAME --address IP`. --per port
(the default on 127.0.0.1) serves consecutive ports on one address: one toolbox, or tests that target
ports directly. The bearer token comes from BACKEND_TO_DTMA_API_KEY (or DTMA_BEARER_TOKEN) and is never
printed; the admin routes under /__sim/ (faults, counters, state) need the X-Sim-Admin-Token header.

agents (--mode):
  newer  Agentopia's dtma-agent lineage as it behaves on real Docker: POST /tools pulls (--pull-delay) before
         its 201; public GET /status lists every container on the host; GET /tools/status (token) lists the
         managed ones with instance ids; names kept in memory only (an agent restart forgets them, a name
         removed with docker rm stays blocked); Docker errors come back as 500 "(HTTP code N) ..."; a stop
         of an exited container is a 500 with Docker's 304; no restart route.
  older  the dtma/ lineage: GET /status needs the token and lists only what it deployed (shape a, not_found
         for a container removed behind its back); no /tools/status; a stop of a stopped container is 304.
  kind   the simulator's kinder agent: one listing shape (--shape), no pull, every bound port published,
         a stop of a stopped container answers 200. For tests about something else.
  Without --mode, --shape a picks older and --shape b or c picks newer (when the default is a real agent).

ports: the agents never set ExposedPorts, so a HostPort binding is published only when the image EXPOSEs
that port. Declare simulated images with --image IMAGE=PORTS (repeatable): `mcp/fetch:1=none` exposes
nothing, `ctx:1=8080,9090/udp` exposes those, `slow:1=8080;pull=30` also pulls for 30 s, `gone:1=missing`
fails the pull. Undeclared images follow --images-expose: bound (the default: an image exposes every port
it is bound to) or none.

MCP: a running container serves MCP on each published host port, at its toolbox's own address
(streamable-http, sse and websocket at any path; GET /health answers 200). Per image: `bad:2=8080;broken`
(nothing listens), `x:1=8080;mcp=FAULT` (no-answer, wrong-protocol, handshake-error), `x:2=8080;tools=a,b`.

admin routes (POST, X-Sim-Admin-Token): /__sim/faults {"latency", "jitter", "error_rate", "hang",
"hang_routes", "drop", "docker_down"}, /__sim/clear, /__sim/restart-agent, /__sim/docker/run {"name",
"image", "ports", "state"} (a hand-made container), /__sim/docker/rm {"name"} and /__sim/docker/stop
{"name"} (behind the agent's back), /__sim/images {"image", "exposes", "pull_delay", "missing"},
/__sim/pull-delay {"seconds"}, /__sim/seed, /__sim/exit-after {"name", "seconds"}, /__sim/mcp {"image" or
"name", "fault", "slow_start", "tools", "resources", "prompts", "capabilities", "answers", "health_path",
"latency"}; GET /__sim/state, /__sim/counters, /__sim/answers, /__sim/images, /__sim/mcp.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="start the DTMA simulator (loopback only)",
        description="Serve simulated toolbox agents (Agentopia's DTMA API, as the real agents answer it on "
        "real Docker) on loopback until SIGINT/SIGTERM, printing each toolbox's HOST:PORT. Containers exist in "
        "memory only.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", default="127.0.0.1:30000", help="HOST:PORT of the first toolbox")
    p.add_argument("--toolboxes", type=int, default=1, help="how many toolboxes to serve")
    p.add_argument(
        "--per",
        choices=("address", "port"),
        default=None,
        help="one toolbox per address (same port) or per port; default: address unless HOST is 127.0.0.1",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help=f"which agent to play: newer (dtma-agent), older (dtma/) or kind (default {DEFAULT_MODE}; see below)",
    )
    p.add_argument(
        "--shape",
        choices=("a", "b", "c"),
        default=None,
        help="listing shape: a (older /status), b (newer /status), c (/tools/status); the kind agent serves one",
    )
    p.add_argument(
        "--pull-delay",
        type=float,
        default=0.0,
        help="seconds each POST /tools pulls before answering (real agents)",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE=PORTS",
        help="declare a simulated image: the ports it EXPOSEs (none, 8080,9090/udp), ;pull=SECONDS, missing, "
        ";broken, ;mcp=FAULT, ;tools=a,b",
    )
    p.add_argument(
        "--tools-status",
        choices=("managed", "all"),
        default="managed",
        help="what the newer agent's GET /tools/status lists: the managed containers (as observed) or every "
        "container, unmanaged ones with a null instance id (as one version of its code does)",
    )
    p.add_argument(
        "--images-expose",
        choices=UNKNOWN_EXPOSE,
        default="bound",
        help="what an undeclared image EXPOSEs: every port it is bound to (bound) or nothing (none)",
    )
    p.add_argument("--start-delay", type=float, default=0.0, help="seconds a container stays 'created'")
    p.add_argument("--latency", type=float, default=0.0, help="injected latency per call (seconds)")
    p.add_argument("--jitter", type=float, default=0.0, help="extra random latency up to this (seconds)")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of calls answered 500")
    p.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate (chain)")
    p.add_argument("--tls-key", default=None, help="private key for --tls-cert (if not inside it)")
    p.add_argument("--addresses-json", default=None, help="write the addresses as a JSON list to FILE")
    p.add_argument(
        "--admin-token", default=None, help="token for /__sim/ (default DTMA_SIM_ADMIN_TOKEN or random)"
    )
    p.set_defaults(handler=run)


def _split(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    host, port = _split(args.listen)
    per = args.per or ("port" if host in ("127.0.0.1", "::1") else "address")
    faults: dict[str, Any] = {"latency": args.latency, "jitter": args.jitter}
    if args.error_rate:
        faults["error_rate"] = {"*": args.error_rate}
    images: dict[str, ImageSpec] = {}
    for text in args.image:
        try:
            name, spec = parse_image_flag(text)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        images[name] = spec
    try:
        sim = Simulator(
            toolboxes=args.toolboxes,
            host=host,
            port=port,
            per=per,
            mode=args.mode,
            shape=args.shape,
            images=images,
            unknown_images_expose=args.images_expose,
            pull_delay=args.pull_delay,
            tools_status=args.tools_status,
            admin_token=args.admin_token,
            start_delay=args.start_delay,
            faults=faults,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    except SimulatorError as exc:
        raise ConfigError(str(exc)) from exc
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim.start()
    try:
        if args.addresses_json:
            with open(args.addresses_json, "w", encoding="utf-8") as fh:
                json.dump(sim.addresses, fh)
        for address in sim.addresses:
            print(address)
        sys.stdout.flush()
        stop.wait()
    finally:
        sim.stop()
    return 0
