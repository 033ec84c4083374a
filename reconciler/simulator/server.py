"""The simulator's HTTP side: one listening socket per toolbox, one selector thread accepting on all of them,
one thread per connection (stdlib ``http.server``). Requests are routed to the toolbox by the socket they
arrived on. Admin routes under ``/__sim/`` need the ``X-Sim-Admin-Token`` header.
"""

from __future__ import annotations

import _thread
import contextlib
import email.utils
import hmac
import ipaddress
import json
import logging
import os
import random
import selectors
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from reconciler.simulator.agent import AgentToolbox, OlderAgentToolbox
from reconciler.simulator.http_base import FastRequestHandler
from reconciler.simulator.images import ImageRegistry, ImageSpec, McpBehaviour
from reconciler.simulator.mcp_server import McpListeners
from reconciler.simulator.modes import ModeError, resolve_mode
from reconciler.simulator.toolbox import _NAMED, ApiError, Faults, Toolbox

log = logging.getLogger(__name__)

ADMIN_HEADER = "X-Sim-Admin-Token"
_TOOLBOXES: dict[str, type[Toolbox]] = {"kind": Toolbox, "newer": AgentToolbox, "older": OlderAgentToolbox}


class SimulatorError(Exception):
    """The simulator cannot start as asked (non-loopback address, no token, port taken)."""


def check_loopback(host: str) -> None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SimulatorError(f"simulator address {host!r} is not an IP address (use 127.0.0.0/8 or ::1)") from None
    if not ip.is_loopback:
        raise SimulatorError(f"simulator refuses to listen on {host}: only loopback (127.0.0.0/8, ::1) is allowed")


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get("BACKEND_TO_DTMA_API_KEY") or env.get("DTMA_BEARER_TOKEN") or None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self, addr: tuple[str, int], sim: Simulator, toolbox: Toolbox, tls: ssl.SSLContext | None = None
    ) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)
        self.sim = sim
        self.toolbox = toolbox
        # The connections being served: a stopped simulator closes them, so that no kept-alive connection
        # thread goes on answering (and logging) after its owner, a test or the demo, has ended.
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.tls = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            # The handshake waits for the first read, in the connection's own thread: one slow client must
            # not stall the accept loop that serves every toolbox.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, as ``ThreadingMixIn``, but started without waiting for it to run:
        ``Thread.start()`` blocks the accept loop until the new thread holds the GIL (measured: most of the
        simulator's cost per connection with 64 clients connecting at once)."""
        _thread.start_new_thread(self.process_request_thread, (request, client_address))

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or rejects our certificate is the client's business: one debug line,
        # not a traceback on stderr per connection.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError):
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks socket.getfqdn() for the name: a reverse DNS lookup per toolbox that
        # made starting a thousand toolboxes slow. The name is never used, so skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class _Handler(FastRequestHandler):
    server: _Server
    _route: str | None = None  # the agent route being answered (None for admin routes)

    def log_message(self, format: str, *args: Any) -> None:
        # A connection cut by stop() may still note its end; once stopped, the simulator has nothing to report.
        if log.isEnabledFor(logging.DEBUG) and not self.server.sim.stopped:
            log.debug("sim %s %s", self.server.toolbox.address, format % args)

    def address_string(self) -> str:
        return str(self.client_address[0])  # never a reverse DNS lookup

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing --------------------------------------------------------------------------------------

    def _read_body(self) -> None:
        # Always drain the body, even for an answer that ignores it: on a kept-alive connection an unread
        # body would be parsed as the next request line.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length > 0 else b""
        self._complete = len(self._raw) == max(0, length)

    def _body(self) -> Any:
        raw = self._raw
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _send(self, status: int, body: Any, *, text: bool = False) -> None:
        if self._route is not None:
            self.server.toolbox.answered(self._route, status)
        if status == 304:
            # Express answers a 304 with no body and no entity headers (the older agent's stop of a stopped
            # container).
            data = b""
            self.log_request(status, 0)
            head = (
                f"HTTP/1.1 304 Not Modified\r\nServer: {self.version_string()}\r\nDate: {_http_date()}\r\n"
                + ("Connection: close\r\n" if self.close_connection else "")
                + "\r\n"
            )
            self.wfile.write(head.encode("latin-1"))
            return
        data = body.encode() if text else json.dumps(body).encode()
        self.log_request(status, len(data))
        reason = self.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nServer: {self.version_string()}\r\nDate: {_http_date()}\r\n"
            f"Content-Type: {'text/plain' if text else 'application/json'}\r\nContent-Length: {len(data)}\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        self.wfile.write(head.encode("latin-1") + data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def _dispatch(self, method: str) -> None:
        sim, tb = self.server.sim, self.server.toolbox
        self._route = None  # the handler lives as long as the kept-alive connection
        self._read_body()
        path = self.path.split("?", 1)[0]
        if not self._complete:
            # The client went away between its headers and the end of its body (http.client sends them in
            # two writes; a kill -9 can fall in between). Like any HTTP server in front of the agent's
            # routes, the simulator never hands such a request on: it is not a call, only noted as cut short.
            self.close_connection = True
            if not path.startswith("/__sim/"):
                tb.answered(_route_key(method, path), "incomplete")
            return
        if path.startswith("/__sim/"):
            self._admin(method, path)
            return
        route = _route_key(method, path)
        tb.count(route)
        self._route = route
        faults = tb.faults
        if faults.latency or faults.jitter:
            time.sleep(faults.latency + random.uniform(0, faults.jitter))
        if faults.hangs(route):
            tb.unhang.wait(faults.hang_max)
        if faults.drop:
            tb.answered(route, "dropped")
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        rate = faults.error_rate.get(route, faults.error_rate.get("*", 0.0))
        if rate and random.random() < rate:
            self._send(500, {"error": "Internal Server Error"})
            return
        if method == "GET" and path == "/health":
            self._send(200, "OK", text=True)
            return
        if not tb.is_public(method, path):
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Bearer ") or not auth[7:].strip() or len(auth[7:].split()) != 1:
                self._send(401, {"error": "Unauthorized: Missing or invalid token format"})
                return
            if not hmac.compare_digest(auth[7:].strip().encode(), sim.token.encode()):
                self._send(403, {"error": "Forbidden: Invalid token"})
                return
        try:
            self._send(*tb.handle(method, path, self._body()))
        except ApiError as exc:
            self._send(exc.status, exc.body)
        finally:
            if method != "GET":
                sim.mcp.sync(tb)  # a container started, stopped or went: its MCP port follows

    def _admin(self, method: str, path: str) -> None:
        sim = self.server.sim
        given = self.headers.get(ADMIN_HEADER) or ""
        if not hmac.compare_digest(given.encode(), sim.admin_token.encode()):
            self._send(403, {"error": "Forbidden: bad admin token"})
            return
        body = self._body() or {}
        try:
            self._admin_route(method, path, body)
        finally:
            # containers of this toolbox may have started or gone (an image's settings sync every toolbox)
            if method == "POST" and path == "/__sim/images":
                sim.mcp.sync_all(list(sim.toolboxes()))
            elif method != "GET":
                sim.mcp.sync(self.server.toolbox)

    def _admin_route(self, method: str, path: str, body: Any) -> None:
        sim, tb = self.server.sim, self.server.toolbox
        try:
            if method == "GET" and path == "/__sim/state":
                self._send(200, tb.snapshot())
            elif method == "GET" and path == "/__sim/counters":
                self._send(200, dict(tb.counters))
            elif method == "GET" and path == "/__sim/answers":
                with tb.lock:
                    answers = dict(tb.answers)
                self._send(200, answers)
            elif method == "POST" and path == "/__sim/faults":
                sim.set_faults(tb.address, **body)
                self._send(200, tb.faults.as_dict())
            elif method == "POST" and path == "/__sim/clear":
                sim.clear_faults(tb.address)
                self._send(200, tb.faults.as_dict())
            elif method == "POST" and path == "/__sim/seed":
                self._send(200, {"success": True, "seeded": tb.seed(body.get("containers"))})
            elif method == "POST" and path in ("/__sim/forget", "/__sim/restart-agent"):
                tb.forget()
                self._send(200, {"success": True})
            elif method == "POST" and path == "/__sim/docker/run":
                self._send(200, tb.docker_run(body))
            elif method == "POST" and path == "/__sim/docker/rm":
                tb.docker_rm(str(body.get("name")))
                self._send(200, {"success": True})
            elif method == "POST" and path == "/__sim/docker/stop":
                tb.docker_stop(str(body.get("name")))
                self._send(200, {"success": True})
            elif method == "POST" and path == "/__sim/images":
                sim.images.update(body)
                self._send(200, sim.images.as_dict())
            elif method == "GET" and path == "/__sim/images":
                self._send(200, sim.images.as_dict())
            elif method == "POST" and path == "/__sim/pull-delay":
                tb.pull_delay = float(body.get("seconds", 0))
                self._send(200, {"success": True, "pull_delay": tb.pull_delay})
            elif method == "POST" and path == "/__sim/mcp":
                self._send(200, sim.set_mcp_from(tb, body).as_dict())
            elif method == "GET" and path == "/__sim/mcp":
                self._send(200, sim.mcp_status(tb))
            elif method == "POST" and path == "/__sim/exit-after":
                tb.exit_after(str(body.get("name")), float(body.get("seconds", 0)))
                self._send(200, {"success": True})
            else:
                self._send(404, {"error": "Not Found"})
        except ApiError as exc:
            self._send(exc.status, exc.body)
        except (TypeError, ValueError) as exc:
            self._send(400, {"error": f"bad admin request: {exc}"})


_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    """The Date header, formatted once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return str(_date_cache[1])


def _route_key(method: str, path: str) -> str:
    m = _NAMED.match(path)
    if m and not (method == "GET" and path == "/tools/status"):
        return f"{method} /tools/{{name}}{m.group(2) or ''}"
    return f"{method} {path}"


def _tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SimulatorError(f"simulator cannot load TLS certificate {cert}: {exc}") from None
    return context


class Simulator:
    """Many simulated DTMA agents in one process.

    ``per="address"``: toolbox i listens on ``host + i`` (127.0.1.1, 127.0.1.2, ...) at one port;
    ``per="port"``: on ``host`` at consecutive ports (port 0 lets the OS choose each).
    """

    def __init__(
        self,
        *,
        toolboxes: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        per: str = "port",
        mode: str | None = None,
        modes: Mapping[int, str] | None = None,
        shape: str | None = None,
        shapes: Mapping[int, str] | None = None,
        images: Mapping[str, ImageSpec] | None = None,
        unknown_images_expose: str = "bound",
        pull_delay: float = 0.0,
        tools_status: str = "managed",
        token: str | None = None,
        admin_token: str | None = None,
        start_delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        faults: Mapping[str, Any] | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        check_loopback(host)
        token = token or token_from_env()
        if not token:
            raise SimulatorError(
                "simulator needs a bearer token: set BACKEND_TO_DTMA_API_KEY or DTMA_BEARER_TOKEN"
            )
        try:
            chosen = [
                resolve_mode((modes or {}).get(i, mode), (shapes or {}).get(i, shape)) for i in range(toolboxes)
            ]
            self.images = ImageRegistry(images, unknown_images_expose)
        except (ModeError, ValueError) as exc:
            raise SimulatorError(str(exc)) from None
        if tools_status not in ("managed", "all"):
            raise SimulatorError(f"unknown /tools/status scope {tools_status!r} (managed or all)")
        if per not in ("address", "port"):
            raise SimulatorError(f"unknown layout {per!r} (address or port)")
        self.scheme = "https" if tls_cert else "http"
        tls = _tls_context(tls_cert, tls_key) if tls_cert else None
        self.token = token
        self.admin_token = admin_token or os.environ.get("DTMA_SIM_ADMIN_TOKEN") or os.urandom(16).hex()
        self._servers: list[_Server] = []
        self._by_address: dict[str, Toolbox] = {}
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self.mcp = McpListeners()  # the MCP servers inside the containers
        base = ipaddress.ip_address(host)
        try:
            for i in range(toolboxes):
                if per == "address":
                    ip = str(base + i)
                    check_loopback(ip)
                    bind_port = port if i == 0 or port else self._servers[0].server_address[1]
                else:
                    ip = str(base)
                    bind_port = port + i if port else 0
                tb_mode, tb_shape = chosen[i]
                tb = _TOOLBOXES[tb_mode](
                    "",
                    shape=tb_shape,
                    start_delay=start_delay,
                    clock=clock,
                    faults=Faults(**dict(faults or {})),
                    images=self.images,
                    pull_delay=pull_delay,
                )
                if isinstance(tb, AgentToolbox):
                    tb.tools_status_scope = tools_status
                try:
                    srv = _Server((ip, bind_port), self, tb, tls)
                except OSError as exc:
                    raise SimulatorError(f"simulator cannot listen on {ip}:{bind_port}: {exc.strerror}") from exc
                actual = srv.server_address[1]
                tb.address = f"[{ip}]:{actual}" if ":" in ip else f"{ip}:{actual}"
                self._servers.append(srv)
                self._by_address[tb.address] = tb
        except BaseException:
            self._close_sockets()
            raise

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of each toolbox, in order."""
        return [s.toolbox.address for s in self._servers]

    def base_url(self, index: int) -> str:
        return f"{self.scheme}://{self.addresses[index]}"

    def start(self) -> Simulator:
        self.mcp.start()
        self._thread = threading.Thread(target=self._serve, name="dtma-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.mcp.start()
        self._serve()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        for srv in self._servers:
            sel.register(srv.socket, selectors.EVENT_READ, srv)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.data is None:
                        return
                    key.data._handle_request_noblock()
        finally:
            sel.close()

    def stop(self) -> None:
        self._stopping.set()
        for tb in self._by_address.values():
            tb.unhang.set()
            tb.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.mcp.stop()
        self._close_sockets()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def _close_sockets(self) -> None:
        for srv in self._servers:
            srv.server_close()
            srv.close_connections()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Python admin API ------------------------------------------------------------------------------

    def toolbox(self, which: int | str) -> Toolbox:
        return self._servers[which].toolbox if isinstance(which, int) else self._by_address[which]

    def toolboxes(self) -> Iterator[Toolbox]:
        return iter(s.toolbox for s in self._servers)

    def set_faults(self, which: int | str, **faults: Any) -> None:
        tb = self.toolbox(which)
        with tb.lock:
            tb.faults.update(faults)
            if tb.faults.hang:
                tb.unhang.clear()
            else:
                tb.unhang.set()

    def clear_faults(self, which: int | str) -> None:
        tb = self.toolbox(which)
        with tb.lock:
            tb.faults = Faults()
            tb.unhang.set()

    def counters(self, which: int | str | None = None) -> dict[str, int]:
        """Calls per route of one toolbox, or summed over all of them."""
        boxes = [self.toolbox(which)] if which is not None else list(self.toolboxes())
        total: dict[str, int] = {}
        for tb in boxes:
            with tb.lock:
                for k, v in tb.counters.items():
                    total[k] = total.get(k, 0) + v
        return total

    def answers(self, which: int | str | None = None) -> dict[str, int]:
        """Answers per route and status (``{"POST /tools 201": 3, "POST /tools 409": 1}``), of one toolbox
        or summed over all. Unlike ``counters``, a call counts here once the simulator decided its answer:
        ``POST /tools 201`` is the number of containers created."""
        boxes = [self.toolbox(which)] if which is not None else list(self.toolboxes())
        total: dict[str, int] = {}
        for tb in boxes:
            with tb.lock:
                for k, v in tb.answers.items():
                    total[k] = total.get(k, 0) + v
        return total

    def env_of(self, which: int | str, name: str) -> list[str]:
        """The Env list a container was deployed with (Python API only: values may be secrets)."""
        tb = self.toolbox(which)
        with tb.lock:
            return list(tb.containers[name].env)

    def set_image(
        self,
        image: str,
        *,
        exposes: list[str | int] | None = None,
        pull_delay: float | None = None,
        missing: bool = False,
    ) -> None:
        """Declare a simulated image for every toolbox: the container ports it EXPOSEs (``[]``: none), its
        pull time, or that the registry has no such image."""
        self.images.declare(image, exposes=exposes, pull_delay=pull_delay, missing=missing)
        self.mcp.sync_all(list(self.toolboxes()))

    def set_mcp(self, image: str, **settings: Any) -> McpBehaviour:
        """How ``image``'s MCP server behaves from now on, in every toolbox (``McpBehaviour``'s fields:
        ``fault``, ``slow_start``, ``tools``, ``resources``, ``prompts``, ``capabilities``, ``answers``,
        ``health_path``); containers already running that image change at once."""
        behaviour = self.images.set_mcp(image, settings)
        self.mcp.sync_all(list(self.toolboxes()))
        return behaviour

    def set_container_mcp(self, which: int | str, name: str, **settings: Any) -> McpBehaviour:
        """One container's MCP behaviour, over its image's; it goes with the container."""
        tb = self.toolbox(which)
        behaviour = tb.set_container_mcp(name, settings)
        self.mcp.sync(tb)
        return behaviour

    def set_mcp_from(self, tb: Toolbox, body: Any) -> McpBehaviour:
        """The admin route's body: ``{"image": ...}`` or ``{"name": CONTAINER}``, plus the settings."""
        if not isinstance(body, Mapping):
            raise ValueError("the body must be an object")
        settings = {k: v for k, v in body.items() if k not in ("image", "name")}
        if body.get("name"):
            behaviour = tb.set_container_mcp(str(body["name"]), settings)
            self.mcp.sync(tb)
            return behaviour
        if body.get("image"):
            return self.set_mcp(str(body["image"]), **settings)
        raise ValueError("say which MCP server: 'image' (every container of it) or 'name' (one container)")

    def mcp_status(self, which: int | str | Toolbox) -> dict[str, Any]:
        """A toolbox's listening MCP ports (port -> container), its MCP request counts and its bind errors."""
        tb = which if isinstance(which, Toolbox) else self.toolbox(which)
        listening = self.mcp.listening(tb)
        with tb.lock:
            return {
                "listening": {str(port): name for port, name in sorted(listening.items())},
                "counters": dict(tb.mcp_counters),
                "bind_errors": dict(tb.mcp_bind_errors),
            }

    def mcp_counters(self, which: int | str | None = None) -> dict[str, int]:
        """MCP requests by method (``initialize``, ``tools/list``...) and connections accepted
        (``(connection)``), of one toolbox or summed over all."""
        boxes = [self.toolbox(which)] if which is not None else list(self.toolboxes())
        total: dict[str, int] = {}
        for tb in boxes:
            with tb.lock:
                for k, v in tb.mcp_counters.items():
                    total[k] = total.get(k, 0) + v
        return total

    def forget_mcp_sessions(self, which: int | str) -> int:
        """The MCP servers of one toolbox forget their sessions (their connections stay up)."""
        return self.mcp.forget_sessions(self.toolbox(which))

    def restart_agent(self, which: int | str) -> None:
        """The agent restarts: it forgets the names it managed; the containers keep running."""
        self.toolbox(which).forget()

    def docker_rm(self, which: int | str, name: str) -> None:
        """``docker rm -f NAME`` on the toolbox, behind the agent's back."""
        self.toolbox(which).docker_rm(name)
        self.mcp.sync(self.toolbox(which))

    def docker_stop(self, which: int | str, name: str) -> None:
        """``docker stop NAME`` on the toolbox, behind the agent's back."""
        self.toolbox(which).docker_stop(name)
        self.mcp.sync(self.toolbox(which))

    def docker_run(self, which: int | str, name: str, image: str = "example/hand-made:1", **extra: Any) -> None:
        """A hand-made container on the toolbox (``extra``: ``ports``, ``state``, ``command``)."""
        self.toolbox(which).docker_run({"name": name, "image": image, **extra})
        self.mcp.sync(self.toolbox(which))
