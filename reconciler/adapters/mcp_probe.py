"""Readiness probes of MCP servers: implements ``reconciler.ports.Prober``.

The ``mcp`` kind does the client side of the MCP handshake (``initialize``, the ``notifications/initialized``
notification, ``tools/list``, then ``resources/list`` and ``prompts/list`` where the server announces those
capabilities) over the streamable-http or the (older) sse transport; the ``http`` kind GETs a path and wants
a 2xx. The JSON-RPC exchange is written here over ``http.client`` rather than through the MCP SDK: a probe is
a handful of small requests, and the hand-written path costs a fraction of the SDK's CPU per probe and none of
its import time (README, "Health").

Probes run on a bounded thread pool; each holds its server's lock, so one server never has two probes in
flight. A probe never raises: whatever goes wrong is a result with ``ok=False`` and one short error line, with
every secret in scope redacted.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from reconciler import __version__
from reconciler.core.health import ProbeResult, ProbeTarget, ReadinessKind
from reconciler.core.redact import agent_text

# Newest first: the version a client proposes, then the ones it accepts back (the spec's negotiation).
PROTOCOL_VERSIONS: tuple[str, ...] = ("2025-06-18", "2025-03-26", "2024-11-05")
LIST_CAPABILITIES: tuple[tuple[str, str, str], ...] = (
    ("resources", "resources/list", "resources"),
    ("prompts", "prompts/list", "prompts"),
)
MAX_ERROR = 200  # characters of a probe's error line
MAX_BODY = 4 * 1024 * 1024  # bytes of one answer; a server that sends more is not a healthy one
MAX_PAGES = 20  # list pages followed through nextCursor


class ProbeFailure(Exception):
    """One probe's failure, already phrased for the operator (redacted later, with the rest)."""


@dataclass
class _Deadline:
    at: float

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise ProbeFailure("timed out")
        return left


@dataclass
class _Session:
    """The state of one MCP exchange over one connection."""

    target: ProbeTarget
    deadline: _Deadline
    conn: http.client.HTTPConnection
    session_id: str | None = None
    protocol: str | None = None
    next_id: int = 1
    headers: dict[str, str] = field(default_factory=dict)


class McpProber:
    """The prober: one pool of worker threads, made on first use and kept across cycles."""

    def __init__(self, *, secrets: Iterable[str] = (), max_workers: int = 64) -> None:
        self._secrets: set[str] = {s for s in secrets if s}
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def add_secrets(self, values: Iterable[str]) -> None:
        """More values to redact from every error from now on."""
        self._secrets.update(v for v in values if v)

    def probe_many(
        self, targets: Sequence[ProbeTarget], *, concurrency: int
    ) -> dict[tuple[str, str], ProbeResult]:
        unique = {t.key: t for t in targets}  # one probe per server, whatever the caller passed
        if not unique:
            return {}
        limit = threading.BoundedSemaphore(max(1, concurrency))
        pool = self._executor()

        def run(target: ProbeTarget) -> ProbeResult:
            with limit:
                return self.probe(target)

        futures = {key: pool.submit(run, t) for key, t in unique.items()}
        return {key: f.result() for key, f in futures.items()}

    def probe(self, target: ProbeTarget) -> ProbeResult:
        """One probe, under its server's lock (a second caller waits for the first probe to end)."""
        with self._lock(target.key):
            started = time.monotonic()
            try:
                result = _probe(target, _Deadline(started + target.timeout))
            except ProbeFailure as exc:
                result = ProbeResult(ok=False, error=str(exc))
            except Exception as exc:  # a probe reports whatever broke; it never raises
                result = ProbeResult(ok=False, error=_describe(exc))
            if result.error is not None:
                result = replace(
                    result, error=agent_text(result.error, self._secrets, MAX_ERROR).replace("\n", " ")
                )
            return replace(result, duration=time.monotonic() - started)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="probe")
            return self._pool

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | http.client.RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _probe(target: ProbeTarget, deadline: _Deadline) -> ProbeResult:
    if target.kind is ReadinessKind.NONE:
        return ProbeResult(ok=True)
    if target.kind is ReadinessKind.HTTP:
        return _probe_http(target, deadline)
    if target.transport == "streamable-http":
        return _probe_streamable(target, deadline)
    if target.transport == "sse":
        return _probe_sse(target, deadline)
    return ProbeResult(ok=False, error=f"unsupported: no MCP probe over the {target.transport} transport")


def _connection(target: ProbeTarget, deadline: _Deadline) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(target.address, target.port, timeout=deadline.left())


def _path(target: ProbeTarget) -> str:
    return target.path if target.path.startswith("/") else f"/{target.path}"


def _probe_http(target: ProbeTarget, deadline: _Deadline) -> ProbeResult:
    conn = _connection(target, deadline)
    try:
        conn.request("GET", _path(target), headers={"User-Agent": _USER_AGENT})
        response = conn.getresponse()
        _read(response, deadline, conn)
        if 200 <= response.status < 300:
            return ProbeResult(ok=True)
        return ProbeResult(ok=False, error=f"GET {_path(target)} answered {response.status}")
    finally:
        conn.close()


_USER_AGENT = f"mcp-reconciler/{__version__} (readiness probe)"


def _read(response: http.client.HTTPResponse, deadline: _Deadline, conn: http.client.HTTPConnection) -> bytes:
    _settimeout(conn, deadline)
    body = response.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ProbeFailure(f"answer larger than {MAX_BODY} bytes")
    return body


def _settimeout(conn: http.client.HTTPConnection, deadline: _Deadline) -> None:
    if conn.sock is not None:
        conn.sock.settimeout(deadline.left())


# --- streamable-http ------------------------------------------------------------------------------------------


def _probe_streamable(target: ProbeTarget, deadline: _Deadline) -> ProbeResult:
    session = _Session(target, deadline, _connection(target, deadline))
    try:
        return _handshake(session, _post_streamable)
    finally:
        if session.session_id is not None:
            _end_session(session)
        session.conn.close()


def _post_streamable(session: _Session, message: dict[str, Any]) -> dict[str, Any] | None:
    """POST one JSON-RPC message; the answer to a request comes back as JSON or as an SSE stream."""
    headers = {
        "User-Agent": _USER_AGENT,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if session.session_id is not None:
        headers["Mcp-Session-Id"] = session.session_id
    if session.protocol is not None:
        headers["MCP-Protocol-Version"] = session.protocol
    path = _path(session.target)
    _settimeout(session.conn, session.deadline)
    session.conn.request("POST", path, body=json.dumps(message).encode(), headers=headers)
    response = session.conn.getresponse()
    if "id" not in message:  # a notification: 202 Accepted, no body
        _read(response, session.deadline, session.conn)
        if response.status not in (200, 202, 204):
            raise ProbeFailure(f"{message['method']} answered {response.status}")
        return None
    if session.session_id is None:
        session.session_id = response.getheader("Mcp-Session-Id")
    kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if response.status != 200:
        body = _read(response, session.deadline, session.conn)
        raise ProbeFailure(f"{message['method']} answered {response.status}{_error_detail(body)}")
    if kind == "text/event-stream":
        for name, data in _sse_events(response, session.deadline, session.conn):
            answer = _json(data) if name == "message" else None
            if isinstance(answer, dict) and answer.get("id") == message["id"]:
                # the stream may stay open: drop this connection, the next request opens another
                response.close()
                session.conn.close()
                return answer
        raise ProbeFailure(f"{message['method']}: the event stream ended without an answer")
    body = _read(response, session.deadline, session.conn)
    if kind != "application/json":
        raise ProbeFailure(
            f"{message['method']} answered {kind or 'no content type'}, not JSON or an event stream"
        )
    answer = _json(body.decode("utf-8", "replace"))
    if isinstance(answer, list):  # a batch: find ours
        answer = next((a for a in answer if isinstance(a, dict) and a.get("id") == message["id"]), None)
    if not isinstance(answer, dict):
        raise ProbeFailure(f"{message['method']}: the answer is not a JSON-RPC response")
    return answer


def _end_session(session: _Session) -> None:
    """DELETE the session (the spec's way to end one), so a probe every cycle leaves nothing behind."""
    try:
        headers = {"User-Agent": _USER_AGENT, "Mcp-Session-Id": session.session_id or ""}
        if session.protocol is not None:
            headers["MCP-Protocol-Version"] = session.protocol
        _settimeout(session.conn, session.deadline)
        session.conn.request("DELETE", _path(session.target), headers=headers)
        session.conn.getresponse().read(MAX_BODY)
    except (OSError, http.client.HTTPException, ProbeFailure):
        pass  # the probe's answer is already known; a server that cannot end a session is not our concern


def _error_detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    answer = _json(text) if text else None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        text = str(answer["error"].get("message", ""))
    text = " ".join(text.split())
    return f": {text}" if text else ""


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ProbeFailure("the answer is not JSON") from None


# --- the handshake, over either transport --------------------------------------------------------------------


def _request(session: _Session, send: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": session.next_id, "method": method}
    if params is not None:
        message["params"] = params
    session.next_id += 1
    answer = send(session, message)
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


def _handshake(session: _Session, send: Any) -> ProbeResult:
    init = _request(
        session,
        send,
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
    session.protocol = str(version)
    caps = init.get("capabilities")
    capabilities = tuple(sorted(caps)) if isinstance(caps, dict) else ()
    found = init.get("serverInfo")
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    send(session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    names: dict[str, tuple[str, ...]] = {"tools": (), "resources": (), "prompts": ()}
    # tools/list is always asked; a server that does not announce tools may refuse it without failing
    try:
        names["tools"] = _list(session, send, "tools/list", "tools", "name")
    except ProbeFailure:
        if "tools" in capabilities:
            raise
    for capability, method, key in LIST_CAPABILITIES:
        if capability in capabilities:
            names[key] = _list(session, send, method, key, "uri" if key == "resources" else "name")
    return ProbeResult(
        ok=True,
        protocol_version=session.protocol,
        server_name=_text(info.get("name")),
        server_version=_text(info.get("version")),
        capabilities=capabilities,
        tools=names["tools"],
        resources=names["resources"],
        prompts=names["prompts"],
    )


def _list(session: _Session, send: Any, method: str, key: str, field_name: str) -> tuple[str, ...]:
    out: list[str] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        result = _request(session, send, method, {"cursor": cursor} if cursor else None)
        items = result.get(key)
        if not isinstance(items, list):
            raise ProbeFailure(f"{method}: the answer has no {key} list")
        out.extend(str(i[field_name]) for i in items if isinstance(i, dict) and field_name in i)
        cursor = result.get("nextCursor") or None
        if cursor is None:
            break
    return tuple(sorted(out))


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int | float) else None


# --- sse (the 2024-11-05 transport) --------------------------------------------------------------------------


def _probe_sse(target: ProbeTarget, deadline: _Deadline) -> ProbeResult:
    stream_conn = _connection(target, deadline)
    try:
        stream_conn.request(
            "GET", _path(target), headers={"User-Agent": _USER_AGENT, "Accept": "text/event-stream"}
        )
        stream = stream_conn.getresponse()
        if stream.status != 200:
            raise ProbeFailure(f"GET {_path(target)} answered {stream.status}")
        events = _sse_events(stream, deadline, stream_conn)
        endpoint = next((data for name, data in events if name == "endpoint"), None)
        if endpoint is None:
            raise ProbeFailure("the event stream ended before it named its message endpoint")
        post_url = urljoin(target.url, endpoint.strip())
        parts = urlsplit(post_url)
        if parts.hostname != urlsplit(target.url).hostname or (parts.port or 80) != target.port:
            raise ProbeFailure("the message endpoint is on another host")
        post_path = parts.path + (f"?{parts.query}" if parts.query else "")
        session = _Session(target, deadline, _connection(target, deadline))

        def send(s: _Session, message: dict[str, Any]) -> dict[str, Any] | None:
            _settimeout(s.conn, deadline)
            s.conn.request(
                "POST",
                post_path,
                body=json.dumps(message).encode(),
                headers={"User-Agent": _USER_AGENT, "Content-Type": "application/json"},
            )
            response = s.conn.getresponse()
            body = _read(response, deadline, s.conn)
            if response.status not in (200, 202, 204):
                raise ProbeFailure(f"{message['method']} answered {response.status}{_error_detail(body)}")
            if "id" not in message:
                return None
            for name, data in events:
                answer = _json(data) if name == "message" else None
                if isinstance(answer, dict) and answer.get("id") == message["id"]:
                    return answer
            raise ProbeFailure(f"{message['method']}: the event stream ended without an answer")

        try:
            return _handshake(session, send)
        finally:
            session.conn.close()
    finally:
        stream_conn.close()


def _sse_events(response: http.client.HTTPResponse, deadline: _Deadline,
                conn: http.client.HTTPConnection) -> Iterator[tuple[str, str]]:  # fmt: skip
    """(event, data) of each server-sent event."""
    event, data = "message", list[str]()
    size = 0
    while True:
        _settimeout(conn, deadline)
        line = response.readline(MAX_BODY)
        if not line:
            return
        size += len(line)
        if size > MAX_BODY:
            raise ProbeFailure(f"event stream larger than {MAX_BODY} bytes")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif not text.startswith(":"):
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
