"""The MCP servers inside simulated containers: a running container with a published host port listens on that
port of its toolbox's loopback address and answers MCP there, as its image (or the container itself) says.

One accept thread serves every such port (one selector, like the agent side) and one thread per connection
answers. ``McpListeners.sync`` is called after anything that can start, stop or remove a container; it opens and
closes the listening sockets in the caller's thread, so once it returns a stopped container's port refuses
connections. States the clock moves on its own (a start delay, a planned exit, a slow start) are checked on
each request: until the server is ready, or once the container has exited, a connection is closed unanswered.

What one port answers, at any path (the endpoint path is the image's business, not the probe's):
- ``POST`` a JSON-RPC message: the streamable-http transport (``initialize`` opens a session, ``Mcp-Session-Id``
  on every later request, ``DELETE`` ends it), answered as one JSON body or as an SSE stream;
- ``GET`` with ``Accept: text/event-stream`` and no session: the older sse transport (an ``endpoint`` event,
  then the answers to what is POSTed to ``/messages/?session_id=...``);
- ``GET`` the image's health path: ``200 OK`` (the ``http`` readiness kind).
"""

from __future__ import annotations

import _thread
import base64
import contextlib
import hashlib
import json
import logging
import queue
import selectors
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.simulator.http_base import FastRequestHandler
from reconciler.simulator.images import WRONG_PROTOCOL_VERSION, McpBehaviour
from reconciler.simulator.toolbox import Toolbox

log = logging.getLogger(__name__)

# The handshake-era protocol versions the simulated servers speak, oldest first.
PROTOCOL_VERSIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MAX_SESSIONS = 1024  # per port; the oldest is forgotten first (a probe that never DELETEs its session)
HOLD_MAX = 60.0  # seconds a "no-answer" server holds a connection before dropping it
SSE_KEEPALIVE = 15.0  # seconds between comments on an idle sse stream (a gone client is noticed on write)
_MESSAGES = "/messages/"


@dataclass
class _Listener:
    """One listening port: which toolbox and container it belongs to, and its sessions."""

    toolbox: Toolbox
    ip: str
    port: int
    container: str
    container_id: str  # a container replaced under the same name is another server: its sessions are new
    sock: socket.socket
    closed: threading.Event = field(default_factory=threading.Event)
    sessions: OrderedDict[str, None] = field(default_factory=OrderedDict)  # streamable-http
    streams: dict[str, queue.Queue[str | None]] = field(default_factory=dict)  # sse: session -> answers
    open: set[socket.socket] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_session(self) -> str:
        sid = uuid.uuid4().hex
        with self.lock:
            self.sessions[sid] = None
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return sid

    def shut(self) -> None:
        """Stop listening and cut every connection (the container is gone or stopped)."""
        self.closed.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        with self.lock:
            conns = list(self.open)
            streams = list(self.streams.values())
        for q in streams:
            q.put(None)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class McpListeners:
    """Every simulated MCP port of one simulator."""

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._lock = threading.RLock()  # sync runs under it: the listening set changes one toolbox at a time
        self._pending: list[Callable[[selectors.BaseSelector], None]] = []
        self._pending_lock = threading.Lock()  # apart from _lock: sync waits for the thread, holding _lock
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- the set of listening ports ----------------------------------------------------------------------

    def sync(self, tb: Toolbox) -> None:
        """Listen on the MCP ports of ``tb``'s up containers, and on nothing else of ``tb``'s."""
        if self._stopping.is_set():
            return
        ip = _host_of(tb.address)
        with tb.lock:
            wanted: dict[int, tuple[str, str]] = {}
            for c in tb.containers.values():
                if tb.mcp_behaviour(c).fault == "broken":
                    continue  # nothing inside listens
                for port in tb.mcp_ports(c):
                    wanted.setdefault(port, (c.name, c.container_id))
        with self._lock:
            mine = {key: lst for key, lst in self._listeners.items() if lst.toolbox is tb}
            for key, lst in mine.items():
                if wanted.get(key[1]) != (lst.container, lst.container_id):
                    self._close(key, lst)
            for port, (name, container_id) in wanted.items():
                key = (ip, port)
                if key in self._listeners:
                    continue
                try:
                    sock = _listen(ip, port)
                except OSError as exc:
                    why = f"cannot listen on {ip}:{port}: {exc.strerror or exc}"
                    with tb.lock:
                        tb.mcp_bind_errors[name] = why
                    log.debug("simulated MCP server of %s: %s", name, why)
                    continue
                with tb.lock:
                    tb.mcp_bind_errors.pop(name, None)
                lst = _Listener(tb, ip, port, name, container_id, sock)
                self._listeners[key] = lst
                self._post(_registrar(lst))

    def sync_all(self, toolboxes: list[Toolbox]) -> None:
        for tb in toolboxes:
            self.sync(tb)

    def listening(self, tb: Toolbox) -> dict[int, str]:
        """Port -> container of ``tb``'s listening MCP ports."""
        with self._lock:
            return {key[1]: lst.container for key, lst in self._listeners.items() if lst.toolbox is tb}

    def forget_sessions(self, tb: Toolbox) -> int:
        """Every streamable-http session of ``tb``'s servers forgotten, connections left open (a server that
        lost its session store): the next request naming one is answered 404. How many were forgotten."""
        with self._lock:
            mine = [lst for lst in self._listeners.values() if lst.toolbox is tb]
        forgotten = 0
        for lst in mine:
            with lst.lock:
                forgotten += len(lst.sessions)
                lst.sessions.clear()
        return forgotten

    def _close(self, key: tuple[str, int], lst: _Listener) -> None:
        del self._listeners[key]
        fileno = lst.sock.fileno()

        def unregister(sel: selectors.BaseSelector) -> None:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(fileno)

        # The accept thread forgets the socket before it is closed (a closed fd could be reused under it);
        # the caller waits for that, so the port refuses connections once sync returns.
        done = self._post(unregister)
        if done is not None:
            done.wait(5)
        lst.shut()

    # -- the accept thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="mcp-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for lst in listeners:
            lst.shut()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def _post(self, op: Callable[[selectors.BaseSelector], None]) -> threading.Event | None:
        """Run ``op`` on the accept thread's selector; the event is set once it ran (None: no thread yet,
        the op runs when it starts)."""
        done = threading.Event()

        def run(sel: selectors.BaseSelector) -> None:
            try:
                op(sel)
            finally:
                done.set()

        with self._pending_lock:
            self._pending.append(run)
        if self._thread is None:
            return None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        return done

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                with self._pending_lock:
                    pending, self._pending = self._pending, []
                for op in pending:
                    op(sel)
                for key, _ in sel.select():
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        continue
                    self._accept(key.data)
        finally:
            sel.close()

    def _accept(self, lst: _Listener) -> None:
        try:
            conn, addr = lst.sock.accept()
        except OSError:
            return
        lst.toolbox.mcp_counters["(connection)"] += 1  # the accept thread alone counts them
        _thread.start_new_thread(self._handle, (conn, addr, lst))

    @staticmethod
    def _handle(conn: socket.socket, addr: Any, lst: _Listener) -> None:
        with lst.lock:
            lst.open.add(conn)
        try:
            _McpHandler(conn, addr, lst)  # type: ignore[arg-type]  # the handler reads only what _Listener has
        except OSError:
            pass  # the client went away, or the container stopped under it
        finally:
            with lst.lock:
                lst.open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()


def _registrar(lst: _Listener) -> Callable[[selectors.BaseSelector], None]:
    def register(sel: selectors.BaseSelector) -> None:
        if not lst.closed.is_set():
            sel.register(lst.sock, selectors.EVENT_READ, lst)

    return register


def _listen(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _host_of(address: str) -> str:
    host = address.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


# -- one connection ------------------------------------------------------------------------------------------


class _McpHandler(FastRequestHandler):
    server: _Listener  # type: ignore[assignment]

    def setup(self) -> None:
        self.request.setblocking(True)  # accepted from a non-blocking listening socket
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sim MCP %s:%s %s", self.server.ip, self.server.port, format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def address_string(self) -> str:
        return str(self.client_address[0])

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routing ---------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        lst = self.server
        tb = lst.toolbox
        with tb.lock:
            c = tb.containers.get(lst.container)
            ready = c is not None and tb.state_of(c) == "running" and tb.clock() >= tb.mcp_ready_at(c)
            behaviour = tb.mcp_behaviour(c) if c is not None else McpBehaviour()
            image = c.image if c is not None else ""
        if not ready or behaviour.fault == "broken":
            self._drop()  # nothing inside answers yet (or any more)
            return
        path, _, query = self.path.partition("?")
        if behaviour.latency:
            time.sleep(behaviour.latency)  # a simulated network's delay (benchmarks), not synchronisation
        if behaviour.fault == "no-answer":
            tb.mcp_counters[f"{method} (no answer)"] += 1
            lst.closed.wait(HOLD_MAX)
            self._drop()
            return
        if method == "GET" and "websocket" in (self.headers.get("Upgrade") or "").lower():
            tb.mcp_counters["GET (websocket)"] += 1
            self._websocket(lst, behaviour, image)
        elif method == "GET" and path == behaviour.health_path:
            tb.mcp_counters[f"GET {path}"] += 1
            self._send(200, b"OK", "text/plain")
        elif method == "GET" and "text/event-stream" in (self.headers.get("Accept") or ""):
            if self.headers.get("Mcp-Session-Id"):
                self._send(405, b"", "text/plain")  # no server-initiated stream on the streamable transport
            else:
                tb.mcp_counters["GET (sse stream)"] += 1
                self._sse_stream(lst)
        elif method == "POST" and path.startswith(_MESSAGES):
            self._sse_post(lst, query, raw, behaviour, image)
        elif method == "POST":
            self._streamable_post(lst, raw, behaviour, image)
        elif method == "DELETE":
            self._delete_session(lst)
        else:
            self._send(404, b"Not Found", "text/plain")

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, data: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.log_request(status, len(data))
        reason = self.responses.get(status, ("",))[0]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n{extra}"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        self.wfile.write(head.encode("latin-1") + data)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    # -- streamable-http -------------------------------------------------------------------------------------

    def _streamable_post(self, lst: _Listener, raw: bytes, behaviour: McpBehaviour, image: str) -> None:
        message = _parse(raw)
        if message is None:
            self._json(400, _error(None, -32700, "Parse error: one JSON-RPC message expected"))
            return
        lst.toolbox.mcp_counters[str(message.get("method", "(response)"))] += 1
        headers: dict[str, str] = {}
        sid = self.headers.get("Mcp-Session-Id")
        if message.get("method") == "initialize":
            headers["Mcp-Session-Id"] = lst.new_session()
        elif not sid:
            self._json(400, _error(message.get("id"), -32600, "Bad Request: missing Mcp-Session-Id"))
            return
        else:
            with lst.lock:
                known = sid in lst.sessions
            if not known:
                self._json(404, _error(message.get("id"), -32001, "Session not found"))
                return
        answer = _answer(message, behaviour, image)
        if answer is None:
            self._send(202, b"", "text/plain", headers)
        elif behaviour.answers == "sse":
            self._stream_answer(answer, headers)
        else:
            self._json(200, answer, headers)

    def _stream_answer(self, answer: dict[str, Any], headers: dict[str, str]) -> None:
        """The answer as an event stream in chunks, as streaming servers send it (a comment first, then the
        event split across two chunks, then the stream's end)."""
        self.log_request(200, "-")
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n"
        )
        event = f"event: message\ndata: {json.dumps(answer)}\n\n".encode()
        half = len(event) // 2
        chunks = [b": stream opened\n\n", event[:half], event[half:]]
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        self.wfile.write(head.encode("latin-1") + body)

    def _delete_session(self, lst: _Listener) -> None:
        sid = self.headers.get("Mcp-Session-Id")
        if not sid:
            self._send(400, b"Bad Request: missing Mcp-Session-Id", "text/plain")
            return
        with lst.lock:
            known = lst.sessions.pop(sid, 0) is None
        lst.toolbox.mcp_counters["DELETE (session)"] += 1
        self._send(200 if known else 404, b"", "text/plain")

    # -- sse (the 2024-11-05 transport) -------------------------------------------------------------------------

    def _sse_stream(self, lst: _Listener) -> None:
        sid = uuid.uuid4().hex
        answers: queue.Queue[str | None] = queue.Queue()
        with lst.lock:
            lst.streams[sid] = answers
        self.close_connection = True
        try:
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                "Connection: close\r\n\r\n"
            )
            self.wfile.write(head.encode("latin-1"))
            self.wfile.write(f"event: endpoint\ndata: {_MESSAGES}?session_id={sid}\n\n".encode())
            self.wfile.flush()
            while not lst.closed.is_set():
                try:
                    item = answers.get(timeout=SSE_KEEPALIVE)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                if item is None:
                    break
                self.wfile.write(f"event: message\ndata: {item}\n\n".encode())
                self.wfile.flush()
        finally:
            with lst.lock:
                lst.streams.pop(sid, None)

    def _sse_post(self, lst: _Listener, query: str, raw: bytes, behaviour: McpBehaviour, image: str) -> None:
        sid = next((v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "session_id"), "")
        with lst.lock:
            answers = lst.streams.get(sid)
        if answers is None:
            self._send(404, b"Could not find session", "text/plain")
            return
        message = _parse(raw)
        if message is None:
            self._send(400, b"Could not parse message", "text/plain")
            return
        lst.toolbox.mcp_counters[str(message.get("method", "(response)"))] += 1
        answer = _answer(message, behaviour, image)
        self._send(202, b"Accepted", "text/plain")
        if answer is not None:
            answers.put(json.dumps(answer))

    # -- websocket (subprotocol "mcp") ----------------------------------------------------------------------------

    def _websocket(self, lst: _Listener, behaviour: McpBehaviour, image: str) -> None:
        key = self.headers.get("Sec-WebSocket-Key") or ""
        digest = hashlib.sha1((key + _WS_GUID).encode(), usedforsecurity=False).digest()  # RFC 6455's choice
        protocols = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        chosen = "Sec-WebSocket-Protocol: mcp\r\n" if "mcp" in protocols else ""
        self.close_connection = True
        self.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {base64.b64encode(digest).decode()}\r\n{chosen}\r\n"
            ).encode("latin-1")
        )
        self.wfile.flush()
        while not lst.closed.is_set():
            frame = _read_frame(self.rfile)
            if frame is None or frame[0] == 0x8:  # gone, or a close
                self.wfile.write(_frame(0x8, b""))
                return
            opcode, payload = frame
            if opcode == 0x9:
                self.wfile.write(_frame(0xA, payload))
            elif opcode == 0x1:
                message = _parse(payload)
                if message is not None:
                    lst.toolbox.mcp_counters[str(message.get("method", "(response)"))] += 1
                    answer = _answer(message, behaviour, image)
                    if answer is not None:
                        self.wfile.write(_frame(0x1, json.dumps(answer).encode()))
            self.wfile.flush()


# -- the protocol --------------------------------------------------------------------------------------------


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) and message.get("jsonrpc") == "2.0" else None


def _error(request_id: Any, code: int, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": text}}


def _answer(message: dict[str, Any], behaviour: McpBehaviour, image: str) -> dict[str, Any] | None:
    """The JSON-RPC answer to one message (None for a notification or a response)."""
    if "id" not in message or "method" not in message:
        return None
    rid, method = message["id"], message["method"]
    given = message.get("params")
    params: dict[str, Any] = given if isinstance(given, dict) else {}
    announced = behaviour.announced
    if method == "initialize":
        if behaviour.fault == "handshake-error":
            return _error(rid, -32603, "simulated handshake failure: the server could not start a session")
        asked = str(params.get("protocolVersion") or "")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
        if behaviour.fault == "wrong-protocol":
            version = WRONG_PROTOCOL_VERSION
        repo, _, tag = image.rpartition(":") if ":" in image.rpartition("/")[2] else (image, "", "latest")
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": {
                cap: ({"listChanged": False} if cap in ("tools", "prompts") else {}) for cap in announced
            },
            "serverInfo": {"name": repo.rpartition("/")[2] or "sim", "version": tag or "latest"},
        }
        return {"jsonrpc": "2.0", "id": rid, "result": result}
    if method == "ping":
        return {"jsonrpc": "2.0", "id": rid, "result": {}}
    key = {"tools/list": "tools", "resources/list": "resources", "prompts/list": "prompts"}.get(method)
    if key is not None and key in announced:
        return {"jsonrpc": "2.0", "id": rid, "result": {key: _items(key, behaviour)}}
    return _error(rid, -32601, f"Method not found: {method}")


def _capability(name: str) -> dict[str, Any]:
    return {"listChanged": False} if name in ("tools", "prompts") else {}


def _items(key: str, behaviour: McpBehaviour) -> list[dict[str, Any]]:
    if key == "tools":
        schema = {"type": "object"}
        return [{"name": t, "description": f"simulated tool {t}", "inputSchema": schema} for t in behaviour.tools]
    if key == "resources":
        return [{"uri": u, "name": u.rstrip("/").rpartition("/")[2] or u} for u in behaviour.resources]
    return [{"name": p} for p in behaviour.prompts]


_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _read_frame(rfile: Any) -> tuple[int, bytes] | None:
    """One whole frame from a client (masked, unfragmented, as the probe sends them); None once it is gone."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(rfile.read(2), "big")
    elif length == 127:
        length = int.from_bytes(rfile.read(8), "big")
    mask = rfile.read(4) if head[1] & 0x80 else b""
    payload = rfile.read(length)
    if len(payload) < length:
        return None
    if mask:
        keystream = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(length, "big")
    return head[0] & 0x0F, payload


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (a server never masks)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 1 << 16:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload
