"""The two real DTMA agent lineages, as observed on a real Docker engine.

Both keep two things apart, as the real agents do: Docker's containers on the host (``containers`` plus the
droplet's own ``_host`` containers) and the agent's in-memory registry of the names it manages
(``registry``). They drift apart exactly as on a droplet: ``docker rm`` behind the agent's back removes a
container but leaves its name in the registry; an agent restart empties the registry while every container
keeps running.

Docker's own errors are worded as dockerode words them (``(HTTP code N) <meaning> - <Docker's message> ``),
copied from answers recorded on real Docker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.simulator.images import port_key
from reconciler.simulator.toolbox import (
    AGENT_PORT,
    NAME_RE,
    ApiError,
    SimContainer,
    Toolbox,
    _cid,
)

DOCKER_DOWN = "connect ENOENT /var/run/docker.sock"
_RANDOM_PORTS = (32768, 60999)  # Linux's default ephemeral range, where Docker picks a random host port


@dataclass
class Managed:
    """One entry of the agent's in-memory registry (``managedInstances`` in the agent)."""

    instance_id: str | None
    image: str
    port_bindings: dict[str, Any]


def _no_such_container(name: str) -> str:
    return f"(HTTP code 404) no such container - No such container: {name} "


ALREADY_STOPPED = "(HTTP code 304) container already stopped -  "


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _ago(seconds: float) -> str:
    """Docker's human duration (``docker ps`` STATUS column)."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 3600:
        n = int(seconds // 60)
        return "About a minute" if n == 1 else f"{n} minutes"
    n = int(seconds // 3600)
    return "About an hour" if n == 1 else f"{n} hours"


class AgentToolbox(Toolbox):
    """The newer agent (``dtma-agent`` lineage: Express + dockerode)."""

    mode = "newer"
    # What GET /tools/status lists: "managed" (observed on real Docker: the names the agent manages) or "all"
    # (one published version of the agent's code: every container, unmanaged ones with a null instance id).
    tools_status_scope = "managed"

    def __init__(self, address: str, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.registry: dict[str, Managed] = {}
        for c in self._host:
            c.exposed = {port_key(k) for k in c.port_bindings}
            c.published = [
                {"key": port_key(k), "HostIp": "", "HostPort": str(b["HostPort"])}
                for k, bl in c.port_bindings.items()
                for b in bl
            ]
            c.started_at = time.time()

    # -- routing ---------------------------------------------------------------------------------------

    def is_public(self, method: str, path: str) -> bool:
        return method == "GET" and path == "/status"  # the newer agent's /status checks no token

    def listing_route(self, method: str, path: str) -> tuple[int, Any] | None:
        if method == "GET" and path == "/status":
            return 200, self.public_status()
        if method == "GET" and path == "/tools/status":
            return 200, self.tools_status()
        return None  # everything else as every lineage routes it; Express's catch-all 404 has no restart route

    # -- Docker, as the agent sees it ------------------------------------------------------------------

    def _running(self, c: SimContainer) -> bool:
        return self.state_of(c) in ("running", "created") and c.started and not c.stopped

    def _all(self) -> list[SimContainer]:
        return [*self._host, *self.containers.values()]

    def _place(self, c: SimContainer, *, start: bool) -> None:
        """What Docker publishes: a binding only for a port the image EXPOSEs (the agent sets no
        ExposedPorts); a binding without HostPort gets a random host port on every interface."""
        c.exposed = self.images.exposes(c.image, c.port_bindings)
        c.published = []
        taken: set[int] | None = None  # worked out only when a random port is needed (a scan of the host)
        for key, bindings in c.port_bindings.items():
            if port_key(key) not in c.exposed:
                continue
            for given in bindings or []:
                b = given if isinstance(given, Mapping) else {}
                host_port = str(b.get("HostPort") or "").strip()
                if not host_port:
                    taken = self._host_ports() if taken is None else taken
                    host_port = str(self._random_port(taken))
                    taken.add(int(host_port))
                c.published.append(
                    {"key": port_key(key), "HostIp": str(b.get("HostIp") or ""), "HostPort": host_port}
                )
        c.started = False
        if start:
            self._start(c)

    def _random_port(self, taken: set[int]) -> int:
        while True:
            port = random.randint(*_RANDOM_PORTS)
            if port not in taken:
                return port

    def mcp_ports(self, c: SimContainer) -> set[int]:
        """Only what Docker published (a port the image does not EXPOSE is not reachable)."""
        if not c.started or c.stopped:
            return set()
        return {int(p["HostPort"]) for p in c.published if p["HostPort"].isdigit()}

    def _host_ports(self) -> set[int]:
        return {int(p["HostPort"]) for c in self._all() for p in c.published if p["HostPort"].isdigit()}

    def _start(self, c: SimContainer) -> None:
        """``docker start``: fails like Docker when a host port is already published by a running container."""
        for mine in c.published:
            for other in self._all():
                if other is c or not self._running(other):
                    continue
                for theirs in other.published:
                    if theirs["HostPort"] == mine["HostPort"] and _overlap(theirs["HostIp"], mine["HostIp"]):
                        ip = mine["HostIp"] or "0.0.0.0"
                        raise _DockerError(
                            500,
                            f"(HTTP code 500) server error - driver failed programming external connectivity on "
                            f"endpoint {c.name} ({c.container_id}): Bind for {ip}:{mine['HostPort']} failed: "
                            "port is already allocated ",
                        )
        if c.started_at is not None:
            c.created_at = self.clock() - self.start_delay  # a start of an existing container is immediate
        c.started = True
        c.stopped = False
        c.exit_at = None
        c.started_at = time.time()

    def _docker(self) -> None:
        if self.faults.docker_down:
            raise _DockerError(500, DOCKER_DOWN)

    def _inspect_state(self, c: SimContainer) -> dict[str, Any]:
        state = self.state_of(c)
        return {
            "Status": state,
            "Running": state == "running",
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 4000 + int(c.container_id[:4], 16) % 60000 if state == "running" else 0,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": _iso(c.started_at),
            "FinishedAt": _iso(c.finished_at),
        }

    def _network_ports(self, c: SimContainer) -> dict[str, Any]:
        """``NetworkSettings.Ports`` of a running container: each exposed port, with its bindings or null."""
        if not self._running(c):
            return {}
        out: dict[str, Any] = {key: None for key in sorted(c.exposed)}
        for p in c.published:
            out[p["key"]] = (out.get(p["key"]) or []) + [
                {"HostIp": ip, "HostPort": p["HostPort"]} for ip in _ips(p["HostIp"])
            ]
        return out

    # -- the agent's routes ----------------------------------------------------------------------------

    def deploy(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            body = {}
        missing = [
            k for k in ("dockerImageUrl", "instanceNameOnToolbox", "accountToolInstanceId") if not body.get(k)
        ]
        if missing:
            raise ApiError(
                400,
                {
                    "success": False,
                    "error": "Missing required fields: "
                    "dockerImageUrl, instanceNameOnToolbox, accountToolInstanceId",
                },
            )
        name = str(body["instanceNameOnToolbox"])
        image = str(body["dockerImageUrl"])
        override = body.get("baseConfigOverrideJson") or {}
        if not isinstance(override, Mapping):
            override = {}
        env = [str(e) for e in (override.get("Env") or [])]
        host_config = override.get("HostConfig") or {}
        bindings = dict((host_config.get("PortBindings") if isinstance(host_config, Mapping) else None) or {})
        failed = f"Failed to deploy tool '{name}'."
        with self.lock:
            if name in self.registry:
                raise ApiError(409, {"success": False, "error": f"Instance with name '{name}' already exists."})
            wanted = _explicit_host_ports(bindings)
            for entry in self.registry.values():
                clash = next((p for p in wanted if p in _explicit_host_ports(entry.port_bindings)), None)
                if clash is not None:
                    raise ApiError(
                        409,
                        {
                            "success": False,
                            "error": f"Port conflict: Requested HostPort {clash} is already in use by a managed "
                            "instance.",
                        },
                    )
        # The pull: the agent answers only once the image is there, and nothing is created until then.
        spec = self.images.get(image)
        delay = self.pull_delay if spec.pull_delay is None else spec.pull_delay
        if delay > 0:
            self.stopping.wait(delay)
        with self.lock:
            try:
                self._docker()
                if spec.missing:
                    repo = image.rpartition(":")[0] or image
                    raise _DockerError(
                        404,
                        f"(HTTP code 404) unexpected - pull access denied for {repo}, "
                        "repository does not exist or may require 'docker login': denied: requested access to "
                        "the resource is denied ",
                    )
                if not NAME_RE.match(name):
                    raise _DockerError(
                        400,
                        f"(HTTP code 400) unexpected - Invalid container name ({name}), only "
                        "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed ",
                    )
                held = self.containers.get(name) or next((c for c in self._host if c.name == name), None)
                if held is not None:
                    raise _DockerError(
                        409,
                        f'(HTTP code 409) unexpected - Conflict. The container name "/{name}" is already in use '
                        f'by container "{held.container_id}". You have to remove (or rename) that container to '
                        "be able to reuse that name. ",
                    )
                c = SimContainer(name, image, None, _cid(), self.clock(), env, bindings, command="node index.js")
                self.containers[name] = c  # created: it stays even when the start fails, as with Docker
                self._place(c, start=True)
            except _DockerError as exc:
                raise ApiError(500, {"success": False, "message": failed, "error": exc.text}) from None
            self.registry[name] = Managed(str(body["accountToolInstanceId"]), image, bindings)
            return {
                "success": True,
                "message": f"Tool '{name}' deployed successfully.",
                "data": {
                    "container_id": c.container_id,
                    "instance_name_on_toolbox": name,
                    "account_tool_instance_id": str(body["accountToolInstanceId"]),
                    "image": image,
                    "ports": self._network_ports(c),
                    "state": self._inspect_state(c),
                },
            }

    def _managed_container(self, name: str, verb: str) -> SimContainer:
        """The container behind a managed name; 404 for a name the agent does not know, Docker's error for
        a container that is gone."""
        if name not in self.registry:
            raise ApiError(
                404, {"success": False, "error": f"Tool instance '{name}' not found or not managed by this DTMA."}
            )
        self._docker_or(verb, name)
        c = self.containers.get(name)
        if c is None:
            self._fail(404, verb, name, _no_such_container(name))
        assert c is not None
        return c

    def _docker_or(self, verb: str, name: str) -> None:
        try:
            self._docker()
        except _DockerError as exc:
            self._fail(exc.code, verb, name, exc.text)

    def _fail(self, code: int, verb: str, name: str, text: str) -> None:
        """A Docker error on a lifecycle route: the newer agent always answers 500."""
        raise ApiError(
            500, {"success": False, "message": f"Failed to {verb} tool instance '{name}'.", "error": text}
        )

    def start(self, name: str) -> dict[str, Any]:
        with self.lock:
            c = self._managed_container(name, "start")
            if self._running(c):
                return {"success": True, "message": f"Tool instance '{name}' is already running."}
            try:
                self._start(c)
            except _DockerError as exc:
                self._fail(exc.code, "start", name, exc.text)
        return {"success": True, "message": f"Tool instance '{name}' started successfully."}

    def stop(self, name: str) -> dict[str, Any]:
        with self.lock:
            c = self._managed_container(name, "stop")
            if not self._running(c):
                self._fail(304, "stop", name, ALREADY_STOPPED)
            c.stopped = True
            c.finished_at = time.time()
        return {"success": True, "message": f"Tool instance '{name}' stopped successfully."}

    def delete(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.registry:
                raise ApiError(
                    404,
                    {"success": False, "error": f"Tool instance '{name}' not found or not managed by this DTMA."},
                )
            # DELETE answers 500 on every Docker error, in both lineages.
            failed = {"success": False, "message": f"Failed to remove tool instance '{name}'."}
            if self.faults.docker_down:
                raise ApiError(500, {**failed, "error": DOCKER_DOWN})
            if self.containers.pop(name, None) is None:
                raise ApiError(500, {**failed, "error": _no_such_container(name)})
            del self.registry[name]
        return {"success": True, "message": f"Tool instance '{name}' removed successfully."}

    # -- listings --------------------------------------------------------------------------------------

    def _envelope(self) -> dict[str, Any]:
        return {
            "status": "healthy",
            "timestamp": _iso(time.time()),
            "version": "0.1.0",
            "service": "DTMA",
            "environment": {"hasAuthToken": False, "hasApiKey": True, "hasApiBaseUrl": False, "port": "30000"},
        }

    def public_status(self) -> dict[str, Any]:
        """``GET /status``: every container on the host, managed or not, without instance ids; when Docker
        does not answer, one item carrying the error (and still 200)."""
        with self.lock:
            if self.faults.docker_down:
                items: list[dict[str, Any]] = [{"error": DOCKER_DOWN}]
            else:
                items = [self._item_public(c) for c in self._all()]
            return {**self._envelope(), "tool_instances": items, "system_metrics": _metrics()}

    def tools_status(self) -> dict[str, Any]:
        """``GET /tools/status``: the containers the agent manages, with their instance ids."""
        with self.lock:
            if self.faults.docker_down:
                raise ApiError(
                    500,
                    {"success": False, "message": "Failed to retrieve container status.", "error": DOCKER_DOWN},
                )
            if self.tools_status_scope == "all":
                items = [self._item_tools(c) for c in self._all()]
            else:
                items = [self._item_tools(c) for c in self.containers.values() if c.name in self.registry]
            return {**self._envelope(), "version": "1.0.0", "tool_instances": items}

    def _listed_ports(self, c: SimContainer, raw: bool) -> list[dict[str, Any]]:
        """Docker's ``Ports`` of a container in ``docker ps``: published bindings (one per address family when
        no HostIp was given), then exposed ports that nothing publishes; nothing for a stopped container."""
        if not self._running(c):
            return []
        out: list[dict[str, Any]] = []
        published = {p["key"] for p in c.published}
        for p in c.published:
            port, _, proto = p["key"].partition("/")
            for ip in _ips(p["HostIp"]):
                if raw:
                    out.append(
                        {"IP": ip, "PrivatePort": int(port), "PublicPort": int(p["HostPort"]), "Type": proto}
                    )
                else:
                    out.append(
                        {"ip": ip, "private_port": int(port), "public_port": int(p["HostPort"]), "type": proto}
                    )
        for key in sorted(c.exposed - published):
            port, _, proto = key.partition("/")
            out.append(
                {"PrivatePort": int(port), "Type": proto} if raw else {"private_port": int(port), "type": proto}
            )
        return out

    def _docker_status(self, c: SimContainer) -> str:
        state = self.state_of(c)
        now = time.time()
        if state == "running":
            return "Up " + _ago(now - (c.started_at or now))
        if state == "exited":
            return f"Exited (0) {_ago(now - (c.finished_at or now))} ago"
        return "Created"

    def _item_public(self, c: SimContainer) -> dict[str, Any]:
        return {
            "id": c.container_id,
            "names": [c.name],
            "image": c.image,
            "image_id": "sha256:" + c.container_id,
            "command": c.command,
            "created": int(c.created_at),
            "state": self.state_of(c),
            "status": self._docker_status(c),
            "ports": self._listed_ports(c, raw=False),
        }

    def _item_tools(self, c: SimContainer) -> dict[str, Any]:
        return {
            "account_tool_instance_id": self.instance_id_of(c),
            "instance_name_on_toolbox": c.name,
            "container_id": c.container_id,
            "status": self.state_of(c),
            "image": c.image,
            "ports": self._listed_ports(c, raw=True),
            "created": int(c.created_at),
        }

    def listing(self, kind: str) -> dict[str, Any]:
        return self.public_status() if kind == "b" else self.tools_status()

    # -- the agent's memory ----------------------------------------------------------------------------

    def is_managed(self, c: SimContainer) -> bool:
        return c.name in self.registry

    def instance_id_of(self, c: SimContainer) -> str | None:
        entry = self.registry.get(c.name)
        return entry.instance_id if entry else None

    def managed_names(self) -> list[str]:
        with self.lock:
            return list(self.registry)

    def docker_run(self, body: Any) -> dict[str, Any]:
        try:
            return super().docker_run(body)
        except _DockerError as exc:
            with self.lock:
                self.containers.pop(str(body.get("name")), None)
            raise ApiError(409, {"error": exc.text}) from None

    def forget(self) -> None:
        """The agent restarted: its registry is empty; Docker's containers keep running."""
        with self.lock:
            self.registry.clear()

    def seed(self, items: Any) -> int:
        count = super().seed(items)
        with self.lock:
            for item in items:
                c = self.containers[str(item["name"])]
                c.started_at = time.time()
                c.exposed = {port_key(k) for k in c.port_bindings}
                c.published = [
                    {"key": port_key(k), "HostIp": "", "HostPort": str(b["HostPort"])}
                    for k, bl in c.port_bindings.items()
                    for b in bl
                    if str(b.get("HostPort", "")).isdigit()
                ]
                self.registry[c.name] = Managed(c.instance_id, c.image, dict(c.port_bindings))
        return count


class OlderAgentToolbox(AgentToolbox):
    """The older agent (``dtma/`` lineage): ``/status`` behind the token lists only its registry (shape a),
    Docker's status codes pass through on start/stop, no ``/tools/status``."""

    mode = "older"

    def is_public(self, method: str, path: str) -> bool:
        return False

    def listing_route(self, method: str, path: str) -> tuple[int, Any] | None:
        if method == "GET" and path == "/status":
            return 200, self.registry_status()
        if method == "GET" and path == "/tools/status":
            return 404, {"error": "Not Found"}  # no such route in this lineage
        return None

    def _fail(self, code: int, verb: str, name: str, text: str) -> None:
        # The older agent answers with Docker's own status code (error.statusCode || 500).
        if code == 304:
            raise ApiError(304, None)  # Express sends a 304 without its body
        raise ApiError(
            code, {"success": False, "message": f"Failed to {verb} tool instance '{name}'.", "error": text}
        )

    def start(self, name: str) -> dict[str, Any]:
        with self.lock:
            c = self._managed_container(name, "start")
            if self._running(c):
                return {
                    "success": True,
                    "message": f"Tool instance '{name}' is already running.",
                    "data": {"state": self._inspect_state(c)},
                }
            try:
                self._start(c)
            except _DockerError as exc:
                self._fail(exc.code, "start", name, exc.text)
            return {
                "success": True,
                "message": f"Tool instance '{name}' started.",
                "data": {"state": self._inspect_state(c)},
            }

    def stop(self, name: str) -> dict[str, Any]:
        with self.lock:
            c = self._managed_container(name, "stop")
            if not self._running(c):
                self._fail(304, "stop", name, ALREADY_STOPPED)
            c.stopped = True
            c.finished_at = time.time()
            return {
                "success": True,
                "message": f"Tool instance '{name}' stopped.",
                "data": {"state": self._inspect_state(c)},
            }

    def registry_status(self) -> dict[str, Any]:
        """Shape a: one item per registered name, inspected; a container removed behind the agent's back is
        ``not_found``, one Docker will not describe is ``error_inspecting``."""
        with self.lock:
            items = []
            for name, entry in self.registry.items():
                c = self.containers.get(name)
                if self.faults.docker_down:
                    status, cid = "error_inspecting", None
                elif c is None:
                    status, cid = "not_found", None
                else:
                    status, cid = self.state_of(c), c.container_id
                items.append(
                    {
                        "account_tool_instance_id": entry.instance_id,
                        "instance_name_on_toolbox": name,
                        "status": status,
                        "container_id": cid,
                    }
                )
            return {"dtma_version": "0.2.3", "system_metrics": _metrics(), "tool_instances": items}

    def listing(self, kind: str) -> dict[str, Any]:
        return self.registry_status()


class _DockerError(Exception):
    """An error from the simulated Docker engine: its status code and dockerode's text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _explicit_host_ports(bindings: Mapping[str, Any] | None) -> list[str]:
    out: list[str] = []
    for entries in (bindings or {}).values():
        for b in entries or []:
            if isinstance(b, Mapping) and str(b.get("HostPort") or "").strip():
                port = str(b["HostPort"]).strip()
                if port not in out:
                    out.append(port)
    return out


def _ips(host_ip: str) -> list[str]:
    """The addresses Docker binds: both families for an empty HostIp."""
    return [host_ip] if host_ip else ["0.0.0.0", "::"]


def _overlap(a: str, b: str) -> bool:
    wild = ("", "0.0.0.0", "::")
    return a in wild or b in wild or a == b


def _metrics() -> dict[str, Any]:
    return {
        "cpu_load_percent": 1.0,
        "memory": {
            "total_bytes": 2084024320,
            "active_bytes": 612360192,
            "free_bytes": 1031798784,
            "used_bytes": 1052225536,
        },
        "disk": {"mount": "/", "total_bytes": 51835101184, "used_bytes": 6442450944, "free_bytes": 45392650240},
    }


__all__ = ["AGENT_PORT", "AgentToolbox", "Managed", "OlderAgentToolbox"]
