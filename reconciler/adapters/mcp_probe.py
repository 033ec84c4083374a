"""Readiness probes of MCP servers: implements ``reconciler.ports.Prober``.

The ``mcp`` kind does the client side of the MCP handshake (``initialize``, the ``notifications/initialized``
notification, ``tools/list``, then ``resources/list`` and ``prompts/list`` where the server announces those
capabilities) over the streamable-http, the older sse or the websocket transport; the ``http`` kind GETs a path
and wants a 2xx.

Over streamable-http the session and its kept-alive connection outlive the probe: the next probe of that server
(the next cycle's) is one request on the open session, ``tools/list`` (``ping`` where no tools are announced),
its answer merged over what the last full handshake found. A full handshake is done again when the session is
gone (a 404 for its id, the connection closed and the session refused, any failure of the one request), every
``FULL_EVERY`` probes, and whenever the caller asks for a ``fresh`` probe (the readiness wait after a create,
replace or start); the session it replaces is ended with a ``DELETE``. Sessions of servers a non-fresh batch no
longer names are dropped, and at most half the process's file descriptors are spent on kept connections (past
that, a probe ends its session as before). The JSON-RPC exchange and its HTTP/1.1 are written here, on asyncio
streams, rather than taken from the MCP SDK: a probe is a handful of small requests, and this costs a fraction
of the SDK's CPU per probe and none of its import time (docs/architecture.md, "MCP health").

Every probe runs on one event loop in one thread of the prober's own, made on first use and kept across cycles:
at most ``concurrency`` at once per call, and one at a time per server (a lock per key). A probe never raises:
whatever goes wrong is a result with ``ok=False`` and one short error line, with every secret redacted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import resource
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from reconciler import __version__
from reconciler.core.health import ProbeResult, ProbeTarget, ReadinessKind
from reconciler.core.redact import agent_text

# Newest first: the version the probe proposes, then the others it accepts back (the spec's negotiation).
PROTOCOL_VERSIONS: tuple[str, ...] = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LISTED: tuple[tuple[str, str, str], ...] = (  # capability, method, the field naming each item
    ("resources", "resources/list", "uri"),
    ("prompts", "prompts/list", "name"),
)
MAX_ERROR = 200  # characters of a probe's error line
MAX_BODY = 4 * 1024 * 1024  # bytes of one answer; a server that sends more is not a healthy one
MAX_LINE = 64 * 1024  # bytes of one header or event line
MAX_PAGES = 20  # list pages followed through nextCursor
# A kept session is probed with one request; every this many probes it is replaced by a full handshake, so what
# only the handshake reads (server name and version, capabilities, resources, prompts) is never older than that.
FULL_EVERY = 10
USER_AGENT = f"mcp-reconciler/{__version__} (readiness probe)"


class ProbeFailure(Exception):
    """One probe's failure, phrased for the operator (redacted and cut later, with the rest)."""


class McpProber:
    """The prober: an event loop in a thread of its own, started on first use."""

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = {s for s in secrets if s}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}  # only the loop's thread touches it
        self._guard = threading.Lock()
        self._max_kept = _kept_budget()

    def add_secrets(self, values: Iterable[str]) -> None:
        """More values to redact from every error from now on."""
        self._secrets.update(v for v in values if v)

    def probe_many(
        self, targets: Sequence[ProbeTarget], *, concurrency: int, fresh: bool = False
    ) -> dict[tuple[str, str], ProbeResult]:
        unique = {t.key: t for t in targets}  # one probe per server, whatever the caller passed
        if not unique:
            return {}
        work = self._probe_all(unique, max(1, concurrency), fresh)
        return asyncio.run_coroutine_threadsafe(work, self._running()).result()

    @property
    def kept_sessions(self) -> int:
        """How many servers have a session kept for their next probe."""
        return len(self._sessions)

    def close(self) -> None:
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            with contextlib.suppress(Exception):  # the kept connections closed while the loop still runs
                asyncio.run_coroutine_threadsafe(self._close_sessions(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="mcp-probe", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _drop_sessions(self, keep: set[tuple[str, str]]) -> None:
        """Forget the kept sessions of every server but ``keep`` (closing their connections)."""
        for key in [k for k in self._sessions if k not in keep]:
            self._sessions.pop(key).conn.close()

    async def _close_sessions(self) -> None:
        writers = [s.conn.writer for s in self._sessions.values() if s.conn.writer is not None]
        self._drop_sessions(set())
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)

    async def _probe_all(
        self, targets: dict[tuple[str, str], ProbeTarget], concurrency: int, fresh: bool
    ) -> dict[tuple[str, str], ProbeResult]:
        if not fresh:  # a cycle's batch names every server in scope: the others' sessions go
            self._drop_sessions(set(targets))
        limit = asyncio.Semaphore(concurrency)

        async def one(target: ProbeTarget) -> ProbeResult:
            async with limit:
                return await self._probe(target, fresh)

        results = await asyncio.gather(*(one(t) for t in targets.values()))
        return dict(zip(targets, results, strict=True))

    async def _probe(self, target: ProbeTarget, fresh: bool) -> ProbeResult:
        lock = self._locks.setdefault(target.key, asyncio.Lock())  # only the loop's thread gets here
        async with lock:
            started = time.monotonic()
            session = self._sessions.pop(target.key, None)
            if session is not None and session.where != _where(target):
                session.conn.close()  # another port, path or transport: another server
                session = None
            room = len(self._sessions) < self._max_kept
            kept: _Session | None = None
            try:
                async with asyncio.timeout(target.timeout):
                    if target.kind is ReadinessKind.MCP and target.transport == "streamable-http":
                        result, kept = await _streamable(target, session, fresh=fresh, keep=room)
                    else:
                        result = await _probe(target)
            except ProbeFailure as exc:
                result = ProbeResult(ok=False, error=str(exc))
            except Exception as exc:  # a probe reports whatever broke; it never raises
                result = ProbeResult(ok=False, error=_describe(exc))
            finally:
                if kept is None and session is not None:
                    session.conn.close()
            if kept is not None:
                self._sessions[target.key] = kept
            if result.error is not None:
                line = " ".join(result.error.split())
                result = replace(result, error=agent_text(line, self._secrets, MAX_ERROR))
            return replace(result, duration=time.monotonic() - started)


def _kept_budget() -> int:
    """Kept connections allowed: half the process's file descriptors (the rest is the daemon's own)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, soft // 2) if soft != resource.RLIM_INFINITY else 1 << 20


def _where(target: ProbeTarget) -> tuple[str, int, str, str, ReadinessKind]:
    return (target.address, target.port, _path(target), target.transport, target.kind)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | asyncio.IncompleteReadError | BrokenPipeError):
        return "connection closed by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _probe(target: ProbeTarget) -> ProbeResult:
    if target.kind is ReadinessKind.NONE:
        return ProbeResult(ok=True)
    if target.kind is ReadinessKind.HTTP:
        async with _Connection(target) as conn:
            answer = await conn.request("GET", _path(target))
            await answer.body()
        if 200 <= answer.status < 300:
            return ProbeResult(ok=True)
        return ProbeResult(ok=False, error=f"GET {_path(target)} answered {answer.status}")
    if target.transport == "streamable-http":
        result, _ = await _streamable(target, None, fresh=True, keep=False)
        return result
    if target.transport == "sse":
        return await _sse(target)
    if target.transport == "websocket":
        return await _websocket(target)
    return ProbeResult(ok=False, error=f"unsupported: no MCP probe over the {target.transport} transport")


def _path(target: ProbeTarget) -> str:
    return target.path if target.path.startswith("/") else f"/{target.path}"


# -- HTTP/1.1, as little as a probe needs ----------------------------------------------------------------------


class _Answer:
    """One HTTP answer: status and headers read, the body read on demand (all of it, or line by line)."""

    def __init__(
        self, reader: asyncio.StreamReader, status: int, headers: dict[str, str], head_only: bool
    ) -> None:
        self._reader = reader
        self.status = status
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: int | None = 0 if head_only else (int(length) if length and length.isdigit() else None)
        self._chunk_left = 0
        self.done = head_only or self._left == 0
        self.reusable = not head_only and (self._chunked or self._left is not None)
        self.reusable = self.reusable and "close" not in headers.get("connection", "").lower()

    @property
    def kind(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    async def body(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while (part := await self._read_some()) is not None:
            size += len(part)
            if size > MAX_BODY:
                raise ProbeFailure(f"answer larger than {MAX_BODY} bytes")
            parts.append(part)
        return b"".join(parts)

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive (an event stream)."""
        buffer = b""
        size = 0
        while (part := await self._read_some()) is not None:
            size += len(part)
            if size > MAX_BODY:
                raise ProbeFailure(f"event stream larger than {MAX_BODY} bytes")
            buffer += part
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace").rstrip("\r")
        if buffer:
            yield buffer.decode("utf-8", "replace").rstrip("\r")

    async def _read_some(self) -> bytes | None:
        if self.done:
            return None
        reader = self._reader
        if self._chunked:
            if self._chunk_left == 0:
                size_line = await reader.readline()
                if not size_line:
                    raise ProbeFailure("connection closed by the server")
                self._chunk_left = int(size_line.split(b";")[0].strip() or b"0", 16)
                if self._chunk_left == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self.done = True
                    return None
            part = await reader.read(min(self._chunk_left, 65536))
            if not part:
                raise ProbeFailure("connection closed by the server")
            self._chunk_left -= len(part)
            if self._chunk_left == 0:
                await reader.readexactly(2)
            return part
        if self._left is None:  # until the connection closes
            part = await reader.read(65536)
            if not part:
                self.done = True
                return None
            return part
        part = await reader.read(min(self._left, 65536))
        if not part:
            raise ProbeFailure("connection closed by the server")
        self._left -= len(part)
        self.done = self._left == 0
        return part


class _Connection:
    """One kept-alive connection to the probed server, opened again when an answer left it unusable."""

    def __init__(self, target: ProbeTarget) -> None:
        self._target = target
        host = target.address
        self._host_header = f"[{host}]:{target.port}" if ":" in host else f"{host}:{target.port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last: _Answer | None = None

    async def __aenter__(self) -> _Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    @property
    def writer(self) -> asyncio.StreamWriter | None:
        return self._writer

    def upgraded(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The raw streams, once an answer switched protocols (101)."""
        if self._reader is None or self._writer is None:
            raise ProbeFailure("connection closed by the server")
        return self._reader, self._writer

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> _Answer:
        if self._last is not None and not (self._last.done and self._last.reusable):
            self.close()  # an answer not read to its end, or one that ended the connection
        elif self._reader is not None and self._reader.at_eof():
            self.close()  # the server closed it while it was idle (a kept connection, between cycles)
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self._target.address, self._target.port, limit=MAX_LINE
            )
        assert self._reader is not None and self._writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        status_line = await self._reader.readline()
        if not status_line:
            raise ProbeFailure("connection closed by the server")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProbeFailure("the answer is not HTTP")
        found: dict[str, str] = {}
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        status = int(parts[1])
        head_only = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        self._last = _Answer(self._reader, status, found, head_only)
        return self._last


# -- the handshake, over either transport ---------------------------------------------------------------------

Send = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass
class _Exchange:
    send: Send
    next_id: int = 1

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.next_id += 1
        answer = await self.send(message)
        if not isinstance(answer, dict):
            raise ProbeFailure(f"{method}: no answer")
        error = answer.get("error")
        if error is not None:
            detail = error.get("message") if isinstance(error, dict) else error
            code = f" ({error.get('code')})" if isinstance(error, dict) and "code" in error else ""
            raise ProbeFailure(f"{method} failed{code}: {detail}")
        result = answer.get("result")
        if not isinstance(result, dict):
            raise ProbeFailure(f"{method}: the answer has no result")
        return result

    async def listing(self, method: str, key: str, field_name: str) -> tuple[str, ...]:
        out: list[str] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = await self.request(method, {"cursor": cursor} if cursor else None)
            items = result.get(key)
            if not isinstance(items, list):
                raise ProbeFailure(f"{method}: the answer has no {key} list")
            out.extend(str(i[field_name]) for i in items if isinstance(i, dict) and field_name in i)
            cursor = result.get("nextCursor") or None
            if cursor is None:
                break
        return tuple(sorted(out))


async def _handshake(exchange: _Exchange, agreed: Callable[[str], None]) -> ProbeResult:
    init = await exchange.request(
        "initialize",
        {
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": {},
            "clientInfo": {"name": "mcp-reconciler", "version": __version__},
        },
    )
    version = init.get("protocolVersion")
    if version not in PROTOCOL_VERSIONS:
        raise ProbeFailure(
            f"the server speaks MCP protocol version {version!r}; this probe speaks {', '.join(PROTOCOL_VERSIONS)}"
        )
    agreed(str(version))
    caps = init.get("capabilities")
    capabilities = tuple(sorted(caps)) if isinstance(caps, dict) else ()
    found = init.get("serverInfo")
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    await exchange.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    listed: dict[str, tuple[str, ...]] = {"resources": (), "prompts": ()}
    # tools/list is always asked; a server that does not announce tools may refuse it without failing
    try:
        tools = await exchange.listing("tools/list", "tools", "name")
    except ProbeFailure:
        if "tools" in capabilities:
            raise
        tools = ()
    for capability, method, field_name in LISTED:
        if capability in capabilities:
            listed[capability] = await exchange.listing(method, capability, field_name)
    return ProbeResult(
        ok=True,
        protocol_version=str(version),
        server_name=_text(info.get("name")),
        server_version=_text(info.get("version")),
        capabilities=capabilities,
        tools=tools,
        resources=listed["resources"],
        prompts=listed["prompts"],
    )


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int | float) else None


def _json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ProbeFailure("the answer is not JSON") from None


def _error_detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        text = str(answer["error"].get("message", ""))
    text = " ".join(text.split())
    return f": {text}" if text else ""


async def _events(answer: _Answer) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event of a stream, as it arrives."""
    event, data = "message", list[str]()
    async for line in answer.lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


# -- streamable-http ---------------------------------------------------------------------------------------------


@dataclass
class _Session:
    """A streamable-http session kept for the server's next probe, with its kept-alive connection."""

    where: tuple[str, int, str, str, ReadinessKind]
    conn: _Connection
    state: dict[str, str]  # Mcp-Session-Id (absent for a server without sessions), MCP-Protocol-Version
    found: ProbeResult  # what the last full handshake found
    next_id: int
    probes: int = 0  # one-request probes since that handshake


def _sender(conn: _Connection, path: str, state: dict[str, str]) -> Send:
    """JSON-RPC over streamable-http on ``conn``; ``state`` takes the session id and the agreed version."""

    async def send(message: dict[str, Any]) -> dict[str, Any] | None:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **state}
        answer = await conn.request("POST", path, json.dumps(message).encode(), headers)
        method = message["method"]
        if "id" not in message:  # a notification: 202 Accepted
            await answer.body()
            if answer.status not in (200, 202, 204):
                raise ProbeFailure(f"{method} answered {answer.status}")
            return None
        if "Mcp-Session-Id" not in state and answer.headers.get("mcp-session-id"):
            state["Mcp-Session-Id"] = answer.headers["mcp-session-id"]
        if answer.status != 200:
            raise ProbeFailure(f"{method} answered {answer.status}{_error_detail(await answer.body())}")
        if answer.kind == "text/event-stream":
            async for name, data in _events(answer):
                found = _json(data) if name == "message" else None
                if isinstance(found, dict) and found.get("id") == message["id"]:
                    return found  # the stream may stay open: the connection is opened again for the next
            raise ProbeFailure(f"{method}: the event stream ended without an answer")
        if answer.kind != "application/json":
            raise ProbeFailure(
                f"{method} answered {answer.kind or 'no content type'}, not JSON or an event stream"
            )
        found = _json(await answer.body())
        if isinstance(found, list):  # a batch: find ours
            found = next((a for a in found if isinstance(a, dict) and a.get("id") == message["id"]), None)
        if not isinstance(found, dict):
            raise ProbeFailure(f"{method}: the answer is not a JSON-RPC response")
        return found

    return send


async def _streamable(
    target: ProbeTarget, session: _Session | None, *, fresh: bool, keep: bool
) -> tuple[ProbeResult, _Session | None]:
    """One probe, and the session to keep for the next (None: nothing kept). ``session`` is the caller's to
    close when this returns no session or raises."""
    conn = session.conn if session is not None else _Connection(target)
    if session is not None and not fresh and session.probes + 1 < FULL_EVERY:
        try:
            return await _one_request(session), session
        except (ProbeFailure, OSError, asyncio.IncompleteReadError):
            # The session is gone (404 for its id, the server restarted, the container replaced), or the server
            # is down: a full handshake says which, in the words every probe's error uses.
            conn.close()
    elif session is not None and "Mcp-Session-Id" in session.state:
        with contextlib.suppress(ProbeFailure, OSError, asyncio.IncompleteReadError):
            await _end(conn, _path(target), session.state)  # the one a full handshake replaces
    state: dict[str, str] = {}
    try:
        exchange = _Exchange(_sender(conn, _path(target), state))
        result = await _handshake(exchange, lambda version: state.__setitem__("MCP-Protocol-Version", version))
        if keep:
            return result, _Session(_where(target), conn, state, result, exchange.next_id)
        if "Mcp-Session-Id" in state:
            # Nowhere to keep it: end it, so a probe every cycle leaves nothing behind on the server.
            await _end(conn, _path(target), state)
    except BaseException:
        conn.close()
        raise
    conn.close()
    return result, None


async def _one_request(session: _Session) -> ProbeResult:
    """The probe of a kept session: ``tools/list`` (``ping`` where no tools are announced)."""
    exchange = _Exchange(_sender(session.conn, session.where[2], session.state), session.next_id)
    found = session.found
    if "tools" in found.capabilities:
        found = replace(found, tools=await exchange.listing("tools/list", "tools", "name"))
    else:
        await exchange.request("ping")
    session.next_id, session.probes = exchange.next_id, session.probes + 1
    return found


async def _end(conn: _Connection, path: str, state: dict[str, str]) -> None:
    answer = await conn.request("DELETE", path, headers=state)
    await answer.body()


# -- sse (the 2024-11-05 transport) ------------------------------------------------------------------------------


async def _sse(target: ProbeTarget) -> ProbeResult:
    async with _Connection(target) as stream_conn, _Connection(target) as conn:
        stream = await stream_conn.request("GET", _path(target), headers={"Accept": "text/event-stream"})
        if stream.status != 200:
            raise ProbeFailure(f"GET {_path(target)} answered {stream.status}")
        events = _events(stream)
        endpoint = None
        async for name, data in events:
            if name == "endpoint":
                endpoint = data.strip()
                break
        if endpoint is None:
            raise ProbeFailure("the event stream ended before it named its message endpoint")
        post_url = urljoin(target.url, endpoint)
        parts = urlsplit(post_url)
        if parts.hostname != urlsplit(target.url).hostname or (parts.port or 80) != target.port:
            raise ProbeFailure("the message endpoint is on another host")
        post_path = parts.path + (f"?{parts.query}" if parts.query else "")

        async def send(message: dict[str, Any]) -> dict[str, Any] | None:
            answer = await conn.request(
                "POST", post_path, json.dumps(message).encode(), {"Content-Type": "application/json"}
            )
            body = await answer.body()
            if answer.status not in (200, 202, 204):
                raise ProbeFailure(f"{message['method']} answered {answer.status}{_error_detail(body)}")
            if "id" not in message:
                return None
            async for name, data in events:
                found = _json(data) if name == "message" else None
                if isinstance(found, dict) and found.get("id") == message["id"]:
                    return found
            raise ProbeFailure(f"{message['method']}: the event stream ended without an answer")

        return await _handshake(_Exchange(send), lambda version: None)


# -- websocket (subprotocol "mcp": one JSON-RPC message per text frame) -------------------------------------------

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


async def _websocket(target: ProbeTarget) -> ProbeResult:
    path = _path(target)
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "mcp",
    }
    async with _Connection(target) as conn:
        answer = await conn.request("GET", path, headers=headers)
        if answer.status != 101:
            raise ProbeFailure(f"GET {path} answered {answer.status}, not a WebSocket upgrade")
        # RFC 6455 fixes SHA-1 here: it proves the server read this handshake, it protects nothing
        digest = hashlib.sha1((key + _WS_GUID).encode(), usedforsecurity=False).digest()
        accept = base64.b64encode(digest).decode()
        if answer.headers.get("sec-websocket-accept") != accept:
            raise ProbeFailure("the server's WebSocket upgrade carries the wrong Sec-WebSocket-Accept")
        reader, writer = conn.upgraded()

        async def send(message: dict[str, Any]) -> dict[str, Any] | None:
            writer.write(_ws_frame(_TEXT, json.dumps(message).encode()))
            if "id" not in message:
                return None
            while True:
                found = _json(await _ws_text(reader, writer))
                if isinstance(found, dict) and found.get("id") == message["id"]:
                    return found

        result = await _handshake(_Exchange(send), lambda version: None)
        writer.write(_ws_frame(_CLOSE, (1000).to_bytes(2, "big")))
        return result


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame (a client masks every frame it sends)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    keystream = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
    return head + mask + masked


async def _ws_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The next text message (fragments joined); pings answered, a close is a failure."""
    parts: list[bytes] = []
    size = 0
    while True:
        first, second = await reader.readexactly(2)
        opcode, length = first & 0x0F, second & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        size += length
        if size > MAX_BODY:
            raise ProbeFailure(f"WebSocket message larger than {MAX_BODY} bytes")
        mask = await reader.readexactly(4) if second & 0x80 else b""
        payload = await reader.readexactly(length)
        if mask:
            keystream = (mask * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(length, "big")
        if opcode == _CLOSE:
            raise ProbeFailure("the server closed the WebSocket")
        if opcode == _PING:
            writer.write(_ws_frame(_PONG, payload))
            continue
        if opcode == _PONG:
            continue
        parts.append(payload)
        if first & 0x80:
            return b"".join(parts)
