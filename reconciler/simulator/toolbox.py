"""One simulated toolbox: its containers, its faults and its call counters (no HTTP here).

``Toolbox`` plays the kinder agent (mode ``kind``); ``reconciler.simulator.agent`` subclasses it for the two
real lineages. Every method takes the lock; container states are computed from the injected clock when read,
so a test that advances its clock sees created -> running (or a planned exit) without any thread doing work.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.simulator.images import ImageRegistry, McpBehaviour
from reconciler.simulator.modes import SHAPES

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
AGENT_PORT = 30000
GATHER_LIMIT = 30.0  # seconds a gathered deploy waits for the others before it goes on alone
_NAMED = re.compile(r"^/tools/([^/]+)(/start|/stop)?$")


@dataclass
class Faults:
    """What goes wrong on one toolbox. Rates are 0..1 per route key (``"GET /status"``, or ``"*"``)."""

    latency: float = 0.0
    jitter: float = 0.0
    error_rate: dict[str, float] = field(default_factory=dict)
    hang: bool = False
    hang_max: float = 60.0
    hang_routes: list[str] = field(default_factory=list)  # route keys that hang; empty: every route
    drop: bool = False
    docker_down: bool = False  # the Docker engine does not answer the agent (socket gone, daemon stopped)

    def update(self, data: Mapping[str, Any]) -> None:
        for key in ("latency", "jitter", "hang_max"):
            if key in data:
                setattr(self, key, float(data[key]))
        for key in ("hang", "drop", "docker_down"):
            if key in data:
                setattr(self, key, bool(data[key]))
        if "error_rate" in data:
            self.error_rate = {str(k): float(v) for k, v in dict(data["error_rate"]).items()}
        if "hang_routes" in data:
            self.hang_routes = [str(r) for r in data["hang_routes"] or []]

    def hangs(self, route: str) -> bool:
        return self.hang and (not self.hang_routes or route in self.hang_routes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "jitter": self.jitter,
            "error_rate": dict(self.error_rate),
            "hang": self.hang,
            "hang_max": self.hang_max,
            "hang_routes": list(self.hang_routes),
            "drop": self.drop,
            "docker_down": self.docker_down,
        }


@dataclass
class SimContainer:
    name: str
    image: str
    instance_id: str | None
    container_id: str
    created_at: float
    env: list[str]
    port_bindings: dict[str, list[dict[str, str]]]
    managed: bool = True
    stopped: bool = False
    exit_at: float | None = None
    command: str = ""
    # Real lineages only: what Docker published ({"key": "8080/tcp", "HostIp": "", "HostPort": "31001"}),
    # the container ports the image EXPOSEs, and whether the container ever started (a failed start leaves
    # it "created").
    published: list[dict[str, str]] = field(default_factory=list)
    exposed: set[str] = field(default_factory=set)
    started: bool = True
    started_at: float | None = None
    finished_at: float | None = None
    mcp: McpBehaviour | None = None  # this container's own MCP behaviour, over its image's (a per-container fault)

    def host_ports(self) -> set[int]:
        out: set[int] = set()
        for bindings in self.port_bindings.values():
            for b in bindings or []:
                if str(b.get("HostPort", "")).isdigit():
                    out.add(int(b["HostPort"]))
        return out


class ApiError(Exception):
    """An answer other than success, with the agent's status code and body."""

    def __init__(self, status: int, body: dict[str, Any] | None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class Toolbox:
    """The kinder agent (mode ``kind``): one listing shape, every route behind the token, a stop of a
    stopped container is fine, an unmanaged name is refused with a plain 500, no pull delay."""

    mode = "kind"

    def __init__(
        self,
        address: str,
        *,
        shape: str = "a",
        start_delay: float = 0.0,
        clock: Callable[[], float],
        faults: Faults | None = None,
        images: ImageRegistry | None = None,
        pull_delay: float = 0.0,
    ) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown listing shape {shape!r} (a, b or c)")
        self.address = address
        self.shape = shape
        self.start_delay = start_delay
        self.clock = clock
        self.faults = faults or Faults()
        self.images = images or ImageRegistry()
        self.pull_delay = pull_delay
        self.lock = threading.RLock()
        self.containers: dict[str, SimContainer] = {}
        self.counters: Counter[str] = Counter()  # calls per route, counted when the request is read
        # Answers per route and status ("POST /tools 201"), counted when decided, even if the client is gone:
        # a POST /tools answered 409 created nothing, one answered 201 created a container.
        self.answers: Counter[str] = Counter()
        self.unhang = threading.Event()
        self.stopping = threading.Event()  # set when the simulator stops: a pull in progress ends at once
        # Requests to the simulated MCP servers, by JSON-RPC method ("initialize", "tools/list") or HTTP route
        # ("GET /health"): apart from ``counters``, which count only the agent's routes.
        self.mcp_counters: Counter[str] = Counter()
        self.mcp_bind_errors: dict[str, str] = {}  # container -> why its MCP port could not be listened on
        # Deploys in progress at once, and the most seen (tests of the executor's per-toolbox concurrency).
        self.deploys_in_flight = 0
        self.most_deploys_in_flight = 0
        # Tests: a deploy waits (at most GATHER_LIMIT seconds) until this many are in progress together, so a
        # run shows whether the client really sends that many at once.
        self.deploy_gather = 0
        self._deploys = threading.Condition()
        now = clock()
        # The agent's own containers, visible only in shape b (every container on the host).
        self._host = [
            SimContainer(
                "dtma_manager",
                "agentopia/dtma:latest",
                None,
                _cid(),
                now,
                [],
                {"30000/tcp": [{"HostPort": "30000"}]},
                managed=False,
                command="node dist/index.js",
            ),
            SimContainer(
                "agentopia_backend",
                "agentopia/backend:latest",
                None,
                _cid(),
                now,
                [],
                {"3000/tcp": [{"HostPort": "3000"}]},
                managed=False,
                command="node server.js",
            ),
        ]

    # -- routing (the HTTP side calls these) ------------------------------------------------------------

    def is_public(self, method: str, path: str) -> bool:
        """Whether the agent answers this route without checking the token (``/health`` always is)."""
        return False

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The agent's answer (status, JSON body or None for an empty one); raises ApiError for errors. The
        write routes are every lineage's; the listing routes are the one thing the lineages differ in here."""
        listing = self.listing_route(method, path)
        if listing is not None:
            return listing
        if method == "POST" and path == "/tools":
            return 201, self._counted_deploy(body)
        m = _NAMED.match(path)
        if m:
            name, action = m.group(1), m.group(2)
            if method == "DELETE" and not action:
                return 200, self.delete(name)
            if method == "POST" and action == "/start":
                return 200, self.start(name)
            if method == "POST" and action == "/stop":
                return 200, self.stop(name)
        return 404, {"error": "Not Found"}

    def _counted_deploy(self, body: Any) -> Any:
        with self._deploys:
            self.deploys_in_flight += 1
            self.most_deploys_in_flight = max(self.most_deploys_in_flight, self.deploys_in_flight)
            self._deploys.notify_all()
            if self.deploy_gather:
                self._deploys.wait_for(
                    lambda: self.deploys_in_flight >= self.deploy_gather or self.stopping.is_set(), GATHER_LIMIT
                )
                # Gathered once is proof enough; later deploys go on at once (a last, smaller batch would
                # otherwise wait out the whole limit).
                self.deploy_gather = 0
        try:
            return self.deploy(body)
        finally:
            with self._deploys:
                self.deploys_in_flight -= 1

    def listing_route(self, method: str, path: str) -> tuple[int, Any] | None:
        """The answer to a listing route this agent serves, or None for any other route."""
        if method == "GET" and path == "/status" and self.shape in ("a", "b"):
            return 200, self.listing(self.shape)
        if method == "GET" and path == "/tools/status" and self.shape in ("b", "c"):
            return 200, self.listing("c")
        return None

    def count(self, route: str) -> None:
        with self.lock:
            self.counters[route] += 1

    def answered(self, route: str, status: int | str) -> None:
        with self.lock:
            self.answers[f"{route} {status}"] += 1

    def state_of(self, c: SimContainer) -> str:
        now = self.clock()
        if not c.started:
            return "created"
        if c.stopped:
            return "exited"
        if c.exit_at is not None and now >= c.exit_at:
            return "exited"
        if now < c.created_at + self.start_delay:
            return "created"
        return "running"

    # -- the MCP servers inside the containers (served by simulator.mcp_server) ------------------------

    def mcp_behaviour(self, c: SimContainer) -> McpBehaviour:
        return c.mcp if c.mcp is not None else self.images.get(c.image).mcp

    def mcp_ports(self, c: SimContainer) -> set[int]:
        """The host ports a container's MCP server is reached on while the container is up."""
        if not c.started or c.stopped:
            return set()
        return c.host_ports()

    def mcp_ready_at(self, c: SimContainer) -> float:
        """When (simulator clock) the server inside starts answering: once running, after its slow start."""
        return c.created_at + self.start_delay + self.mcp_behaviour(c).slow_start

    def set_container_mcp(self, name: str, data: Mapping[str, Any]) -> McpBehaviour:
        with self.lock:
            c = self.containers.get(name)
            if c is None:
                raise ApiError(404, {"error": f"no container '{name}'"})
            c.mcp = self.mcp_behaviour(c).updated(data)
            return c.mcp

    # -- agent operations -----------------------------------------------------------------------------

    def deploy(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            body = {}
        missing = [
            k for k in ("dockerImageUrl", "instanceNameOnToolbox", "accountToolInstanceId") if not body.get(k)
        ]
        if missing:
            raise ApiError(400, {"success": False, "error": f"Missing required fields: {', '.join(missing)}"})
        name = str(body["instanceNameOnToolbox"])
        override = body.get("baseConfigOverrideJson") or {}
        env = [str(e) for e in (override.get("Env") or [])]
        bindings = dict((override.get("HostConfig") or {}).get("PortBindings") or {})
        with self.lock:
            if name in self.containers and self.containers[name].managed:
                raise ApiError(409, {"success": False, "error": f"Instance with name '{name}' already exists."})
            if not NAME_RE.match(name) or name in self.containers:
                # Docker refuses the name (bad characters, or a container it still has): a 500 like the agent.
                raise ApiError(
                    500,
                    {
                        "success": False,
                        "message": f"Failed to deploy tool '{name}'.",
                        "error": f'(HTTP code 409) invalid or conflicting container name "{name}"',
                    },
                )
            new = SimContainer(
                name,
                str(body["dockerImageUrl"]),
                str(body["accountToolInstanceId"]),
                _cid(),
                self.clock(),
                env,
                bindings,
            )
            taken: set[int] = {AGENT_PORT}
            for c in self.containers.values():
                taken |= c.host_ports()
            for port in sorted(new.host_ports() & taken):
                raise ApiError(
                    409,
                    {
                        "success": False,
                        "error": f"Port conflict: Requested HostPort {port} "
                        "is already in use by a managed instance.",
                    },
                )
            self.containers[name] = new
            state = self.state_of(new)
        ports = {k: [{"HostIp": "0.0.0.0", **b} for b in v] for k, v in bindings.items()}
        return {
            "success": True,
            "message": f"Tool '{name}' deployed successfully.",
            "data": {
                "container_id": new.container_id,
                "instance_name_on_toolbox": name,
                "account_tool_instance_id": new.instance_id,
                "image": new.image,
                "ports": ports,
                "state": {"Status": state, "Running": state == "running"},
            },
        }

    def _managed(self, name: str) -> SimContainer:
        c = self.containers.get(name)
        if c is None or not c.managed:
            raise ApiError(
                404, {"success": False, "error": f"Tool instance '{name}' not found or not managed by this DTMA."}
            )
        return c

    def start(self, name: str) -> dict[str, Any]:
        with self.lock:
            c = self._managed(name)
            c.stopped = False
            c.exit_at = None
            c.created_at = self.clock() - self.start_delay  # a start of an existing container is immediate
        return {"success": True, "message": f"Tool '{name}' started successfully."}

    def stop(self, name: str) -> dict[str, Any]:
        with self.lock:
            self._managed(name).stopped = True
        return {"success": True, "message": f"Tool '{name}' stopped successfully."}

    def delete(self, name: str) -> dict[str, Any]:
        with self.lock:
            self._managed(name)
            del self.containers[name]
        return {"success": True, "message": f"Tool '{name}' deleted successfully."}

    def seed(self, items: Any) -> int:
        """Add managed containers as if deployed and already running (benchmarks build large fleets so).

        ``items``: a list of ``{"name", "image", "instance_id"}``, each with optional ``"ports"`` (Docker's
        PortBindings, published as given: their MCP servers listen); a name already present is a 409.
        """
        if not isinstance(items, list):
            raise ApiError(400, {"success": False, "error": "seed needs a list of containers"})
        with self.lock:
            now = self.clock()
            for item in items:
                if not isinstance(item, Mapping) or not NAME_RE.match(str(item.get("name", ""))):
                    raise ApiError(400, {"success": False, "error": f"bad container to seed: {item!r}"})
                name = str(item["name"])
                if name in self.containers:
                    raise ApiError(409, {"success": False, "error": f"'{name}' already exists"})
                self.containers[name] = SimContainer(
                    name,
                    str(item.get("image") or "mcp/seeded:latest"),
                    None if item.get("instance_id") is None else str(item["instance_id"]),
                    _cid(),
                    now - self.start_delay,
                    [],
                    dict(item.get("ports") or {}),
                )
        return len(items)

    # -- faults driven by the admin path --------------------------------------------------------------

    def forget(self) -> None:
        """The agent restarted: it no longer knows the names it managed; the containers keep running."""
        with self.lock:
            for c in self.containers.values():
                c.managed = False

    def exit_after(self, name: str, seconds: float) -> None:
        with self.lock:
            c = self.containers.get(name)
            if c is None:
                raise ApiError(404, {"error": f"no container '{name}'"})
            c.exit_at = self.clock() + seconds

    # -- Docker used behind the agent's back (admin path) ---------------------------------------------

    def docker_run(self, body: Any) -> dict[str, Any]:
        """A hand-made container the agent never deployed (``docker run --name ...`` on the droplet).

        ``body``: ``{"name", "image", "ports": {"8080/tcp": [{"HostPort": "8080"}]}, "state": "running"}``;
        the image is taken to EXPOSE the ports it is bound to unless the image registry says otherwise."""
        if not isinstance(body, Mapping) or not NAME_RE.match(str(body.get("name", ""))):
            raise ApiError(400, {"error": f"a hand-made container needs a valid name: {body!r}"})
        name = str(body["name"])
        bindings = dict(body.get("ports") or {})
        state = str(body.get("state") or "running")
        if state not in ("running", "exited", "created"):
            raise ApiError(400, {"error": f"state must be running, exited or created, not {state!r}"})
        with self.lock:
            if name in self.containers:
                raise ApiError(409, {"error": f'Conflict. The container name "/{name}" is already in use'})
            c = SimContainer(
                name,
                str(body.get("image") or "example/hand-made:1"),
                None,
                _cid(),
                self.clock() - self.start_delay,
                [],
                bindings,
                managed=False,
                stopped=state == "exited",
                command=str(body.get("command") or "sh"),
            )
            self.containers[name] = c
            self._place(c, start=state != "created")
            c.stopped = state == "exited"
        return {"success": True, "container_id": c.container_id}

    def _place(self, c: SimContainer, *, start: bool) -> None:
        """Publish a new container's ports (the real lineages work out what Docker would publish)."""
        c.started = start

    def docker_rm(self, name: str) -> None:
        """``docker rm -f`` behind the agent's back: the container is gone, the agent is not told."""
        with self.lock:
            if self.containers.pop(name, None) is None:
                raise ApiError(404, {"error": f"no container '{name}'"})

    def docker_stop(self, name: str) -> None:
        """``docker stop`` behind the agent's back: with restart policy unless-stopped it stays exited."""
        with self.lock:
            c = self.containers.get(name)
            if c is None:
                raise ApiError(404, {"error": f"no container '{name}'"})
            c.stopped = True
            c.finished_at = time.time()

    # -- listings --------------------------------------------------------------------------------------

    def listing(self, kind: str) -> dict[str, Any]:
        with self.lock:
            items = list(self.containers.values())
            if kind == "a":
                return {
                    "dtma_version": "0.2.3-sim",
                    "system_metrics": {"cpu_load_percent": 1.0, "uptime_seconds": 1},
                    "tool_instances": [
                        {
                            "account_tool_instance_id": c.instance_id,
                            "instance_name_on_toolbox": c.name,
                            "status": self.state_of(c),
                            "container_id": c.container_id,
                        }
                        for c in items
                        if c.managed
                    ],
                }
            envelope: dict[str, Any] = {
                "status": "healthy",
                "timestamp": "2026-01-01T00:00:00.000Z",
                "version": "1.4.0-sim" if kind == "b" else "1.0.0-sim",
                "service": "DTMA",
                "environment": {"hasAuthToken": True, "hasApiKey": True, "hasApiBaseUrl": True, "port": "30000"},
            }
            if kind == "b":
                envelope["tool_instances"] = [self._item_b(c) for c in [*self._host, *items]]
            else:
                envelope["tool_instances"] = [self._item_c(c) for c in items if c.managed]
            return envelope

    def _ports(self, c: SimContainer, raw: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key, bindings in c.port_bindings.items():
            port, _, proto = key.partition("/")
            for b in bindings or []:
                if not str(b.get("HostPort", "")).isdigit():
                    continue
                if raw:
                    out.append(
                        {
                            "IP": "0.0.0.0",
                            "PrivatePort": int(port),
                            "PublicPort": int(b["HostPort"]),
                            "Type": proto or "tcp",
                        }
                    )
                else:
                    out.append(
                        {
                            "ip": "0.0.0.0",
                            "private_port": int(port),
                            "public_port": int(b["HostPort"]),
                            "type": proto or "tcp",
                        }
                    )
        return out

    def _item_b(self, c: SimContainer) -> dict[str, Any]:
        state = self.state_of(c)
        return {
            "id": c.container_id,
            "names": ["/" + c.name],
            "image": c.image,
            "image_id": "sha256:" + c.container_id,
            "command": c.command,
            "created": int(c.created_at),
            "state": state,
            "status": "Up" if state == "running" else state.capitalize(),
            "ports": self._ports(c, raw=False),
        }

    def _item_c(self, c: SimContainer) -> dict[str, Any]:
        return {
            "account_tool_instance_id": c.instance_id,
            "instance_name_on_toolbox": c.name,
            "container_id": c.container_id,
            "status": self.state_of(c),
            "image": c.image,
            "ports": self._ports(c, raw=True),
            "created": int(c.created_at),
        }

    def is_managed(self, c: SimContainer) -> bool:
        return c.managed

    def instance_id_of(self, c: SimContainer) -> str | None:
        return c.instance_id

    def managed_names(self) -> list[str]:
        """The names the agent manages (the real lineages' in-memory registry)."""
        with self.lock:
            return [c.name for c in self.containers.values() if c.managed]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "address": self.address,
                "mode": self.mode,
                "shape": self.shape,
                "pull_delay": self.pull_delay,
                "faults": self.faults.as_dict(),
                "counters": dict(self.counters),
                "managed_names": self.managed_names(),
                "containers": [
                    {
                        "name": c.name,
                        "image": c.image,
                        "instance_id": self.instance_id_of(c),
                        "state": self.state_of(c),
                        "managed": self.is_managed(c),
                        "env_keys": sorted(e.partition("=")[0] for e in c.env),
                        "port_bindings": c.port_bindings,
                    }
                    for c in self.containers.values()
                ],
            }


def _cid() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex
