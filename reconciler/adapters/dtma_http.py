"""The DTMA client's one HTTP/1.1 transport, on asyncio: every call to every agent goes through it.

Why not httpx: at 1,000 toolboxes the listing phase was bound by the client's CPU (about 0.7 ms per listing
with 64 threads: request building, header parsing, thread hand-offs and GIL contention on 2 cores). Here one
event-loop thread does every call: plain HTTP to an IP address (what toolboxes have) on raw non-blocking
sockets read by a loop reader callback (``_RawConn``: no resolver, no transport object, and no wait for
writability when the connect finishes within the call), HTTPS and host names on ``asyncio.Protocol``
connections (``_Conn``). The response is parsed from one buffer (Content-Length, chunked or read-to-close
bodies, gzip/deflate decoded), and a connection is kept alive per toolbox between calls (one the server
closes leaves the idle pool at once). Synchronous callers hand their coroutine to the loop thread (``run``).

This module knows nothing of DTMA error classes: it raises ``AioTimeout`` (connect or read) and
``AioTransportError`` (refused, reset, malformed HTTP, TLS failure) whose ``kind`` names the failure the
way httpx does (``ConnectTimeout``, ``ReadTimeout``, ``ConnectError``, ``ReadError``,
``RemoteProtocolError``), and ``AioBodyTooLarge``; ``dtma_client.map_transport_error`` is the one place
that turns them into the project's errors. Messages never contain request headers (the token).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
MAX_HEADER_BYTES = 64 * 1024
CLOSE_TIMEOUT = 2.0  # seconds to wait for connections (TLS close_notify) when the client closes
Origin = tuple[str, str, int]


class AioError(Exception):
    """A failure of one request; ``kind`` names it like the httpx exception it stands for."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class AioTimeout(AioError):
    pass


class AioTransportError(AioError):
    pass


class AioBodyTooLarge(Exception):
    pass


CONNECT_KINDS = frozenset({"ConnectError", "ConnectTimeout", "UnsupportedProtocol"})  # nothing was sent


@dataclass(frozen=True)
class Endpoint:
    """Where a request goes: the origin and the request bytes (which carry the token: never shown)."""

    origin: Origin
    request: bytes = field(repr=False)


def endpoint(
    base_url: str, path: str, headers: list[tuple[str, str]], *, method: str = "GET", body: bytes | None = None
) -> Endpoint:
    """The request bytes of ``method base_url + path`` with ``headers`` (plus Host and, with a body,
    Content-Length). Header values must be Latin-1: the caller checks what it puts there."""
    url = urlsplit(base_url.rstrip("/") + path)
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise AioTransportError("UnsupportedProtocol", f"unsupported URL scheme {scheme!r}")
    host = url.hostname or ""
    port = url.port or (443 if scheme == "https" else 80)
    default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
    host_header = f"[{host}]" if ":" in host else host
    if not default:
        host_header += f":{port}"
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", "Accept-Encoding: gzip, deflate"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Endpoint((scheme, host, port), head + (body or b""))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: bytes arrive in ``buf``; ``wait`` sleeps until more come (or the end)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        if not self.lost.done():
            self.lost.set_result(None)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until data or the end arrives, at most ``timeout`` seconds (then ``AioTimeout``)."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiter = fut
        timer = None if timeout is None else self.loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _RawConn(_Conn):
    """A plain-TCP connection on a non-blocking socket driven by the loop's reader callback, without an
    asyncio transport: at 1,000 toolboxes the transport machinery (create_connection, the transport object,
    its callbacks) was a large share of the listing CPU. Same interface as ``_Conn`` for the reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        super().__init__(loop)
        self.sock = sock
        self._fd = sock.fileno()
        self._pending = b""  # request bytes the socket did not take at once
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if data:
            self.buf += data
            self._wake()
        else:
            self._lost(None)

    def _lost(self, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.loop.remove_reader(self._fd)
            if self._pending:
                self.loop.remove_writer(self._fd)
            self.sock.close()
        self.closed = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        if not self.lost.done():
            self.lost.set_result(None)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self._pending = data[sent:]
            self.loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        self._pending = self._pending[sent:]
        if not self._pending:
            self.loop.remove_writer(self._fd)

    def close(self) -> None:
        self._lost(None)

    def abort(self) -> None:
        self._lost(None)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(AioTimeout("ReadTimeout", "read timed out"))


class HttpTransport:
    """HTTP/1.1 requests on one event loop (a daemon thread started on first use), bounded concurrency,
    at most ``max_idle`` kept-alive connections (least recently used closed first)."""

    def __init__(
        self,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        concurrency: int,
        ssl_context: Callable[[], ssl.SSLContext],
        max_idle: int,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._concurrency = max(1, concurrency)
        self._ssl_context = ssl_context
        self._max_idle = max(1, max_idle)
        self._idle: OrderedDict[Origin, _Conn] = OrderedDict()
        self._open: set[_Conn] = set()  # every connection not yet lost, to close them all at the end
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sem: asyncio.Semaphore | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpTransport(concurrency={self._concurrency}, idle={len(self._idle)})"

    # -- the loop thread -------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="dtma-aio", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for its result (from any other thread)."""
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:  # created on the loop thread, the only one using it
            self._sem = asyncio.Semaphore(self._concurrency)
        return self._sem

    def close(self) -> None:
        """Close every connection and wait until they are gone (a TLS transport left to the garbage
        collector runs its finaliser at a random later point), then stop the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=CLOSE_TIMEOUT + 5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()

    async def _shutdown(self) -> None:
        self._idle.clear()
        self._sem = None  # bound to this loop; a later call starts a new loop and makes a new one
        conns = list(self._open)
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=CLOSE_TIMEOUT)
        for conn in conns:
            if not conn.lost.done():
                conn.abort()
        await asyncio.sleep(0)  # let the transports' own close callbacks run

    # -- connections -----------------------------------------------------------------------------------

    def _take(self, origin: Origin) -> _Conn | None:
        conn = self._idle.pop(origin, None)
        if conn is not None and (conn.closed or conn.buf):
            conn.close()  # the server closed it (or sent something unasked): never reuse it
            return None
        return conn

    def _give_back(self, origin: Origin, conn: _Conn) -> None:
        old = self._idle.pop(origin, None)
        if old is not None:
            old.close()
        self._idle[origin] = conn
        while len(self._idle) > self._max_idle:
            self._idle.popitem(last=False)[1].close()

    async def _connect(self, origin: Origin) -> _Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        if scheme == "http":
            family = _ip_family(host)
            if family is not None:
                conn = await self._connect_raw(loop, family, host, port)
                self._track(origin, conn)
                return conn
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop),
                    host,
                    port,
                    ssl=self._ssl_context() if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                )
        except TimeoutError:
            raise AioTimeout("ConnectTimeout", "connect timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise AioTransportError("ConnectError", f"{type(exc).__name__}: {exc}") from None
        self._track(origin, conn)
        return conn

    def _track(self, origin: Origin, conn: _Conn) -> None:
        """Remember ``conn`` until it is lost; an idle one the server closes leaves the idle pool at once."""
        self._open.add(conn)

        def gone(_: object) -> None:
            self._open.discard(conn)
            if self._idle.get(origin) is conn:
                del self._idle[origin]

        conn.lost.add_done_callback(gone)

    async def _connect_raw(self, loop: asyncio.AbstractEventLoop, family: int, host: str, port: int) -> _Conn:
        """A non-blocking connect to an IP address (no resolver, no transport), with the connect timeout."""
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex((host, port))
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK) and _connected(sock):
                err = 0  # the handshake finished during the call (loopback, LAN): no wait, no loop round
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                fut: asyncio.Future[None] = loop.create_future()
                fd = sock.fileno()
                loop.add_writer(fd, _done, fut)
                timeout = self._connect_timeout
                timer = None if timeout is None else loop.call_later(timeout, _expire_connect, fut)
                try:
                    await fut
                finally:
                    loop.remove_writer(fd)
                    if timer is not None:
                        timer.cancel()
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                exc = OSError(err, os.strerror(err))
                name = "ConnectionRefusedError" if err == errno.ECONNREFUSED else "OSError"
                raise AioTransportError("ConnectError", f"{name}: {exc}")
            return _RawConn(loop, sock)
        except BaseException:
            sock.close()
            raise

    async def request(
        self, ep: Endpoint, max_body: int, *, read_timeout: float | None = None, reuse: bool = True
    ) -> Response:
        """One request and its answer. With ``reuse`` (idempotent requests only) a kept-alive connection is
        used, and one that turns out closed before any answer is replaced once by a fresh one; without it the
        request always goes on a fresh connection, so it is sent at most once."""
        timeout = self._read_timeout if read_timeout is None else read_timeout
        conn = self._take(ep.origin) if reuse else None
        if conn is not None:
            try:
                return await self._exchange(conn, ep, max_body, timeout)
            except _StaleConnection:
                pass
        conn = await self._connect(ep.origin)
        try:
            return await self._exchange(conn, ep, max_body, timeout)
        except _StaleConnection as exc:
            raise AioTransportError("RemoteProtocolError", str(exc)) from None

    async def _exchange(self, conn: _Conn, ep: Endpoint, max_body: int, timeout: float | None) -> Response:
        ok = False
        try:
            conn.write(ep.request)
            status, headers, body, keep = await self._read_response(conn, max_body, timeout)
            ok = keep
            return Response(status, headers, body)
        finally:
            if ok:
                self._give_back(ep.origin, conn)
            else:
                conn.close()

    async def _read_response(
        self, conn: _Conn, max_body: int, timeout: float | None
    ) -> tuple[int, dict[str, str], bytes, bool]:
        buf = conn.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > MAX_HEADER_BYTES:
                raise AioTransportError("RemoteProtocolError", "response headers too large")
            if conn.closed:
                if not buf:
                    raise _StaleConnection(_ended(conn, "server closed the connection without a response"))
                raise AioTransportError("RemoteProtocolError", _ended(conn, "incomplete response headers"))
            await conn.wait(timeout)
        head = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise AioTransportError("RemoteProtocolError", f"malformed status line {lines[0][:80]!r}")
        version, status = parts[0], int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise AioTransportError("RemoteProtocolError", "malformed response header")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:  # an interim answer: the real one follows
            return await self._read_response(conn, max_body, timeout)
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        if status in (204, 304):
            return status, headers, b"", keep
        encoding = headers.get("transfer-encoding", "").lower()
        if "chunked" in encoding:
            body = await self._chunked(conn, max_body, timeout)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise AioTransportError("RemoteProtocolError", "malformed Content-Length") from None
            if length < 0:
                raise AioTransportError("RemoteProtocolError", "malformed Content-Length")
            if length > max_body:
                raise AioBodyTooLarge()
            while len(buf) < length:
                if conn.closed:
                    raise AioTransportError("ReadError", _ended(conn, "body shorter than Content-Length"))
                await conn.wait(timeout)
            body = bytes(buf[:length])
            del buf[:length]
        else:  # read to the end of the connection
            while not conn.closed:
                if len(buf) > max_body:
                    raise AioBodyTooLarge()
                await conn.wait(timeout)
            if conn.error is not None and not isinstance(conn.error, ssl.SSLError):
                raise AioTransportError("ReadError", _ended(conn, "connection lost"))
            body = bytes(buf)
            buf.clear()
            keep = False
        if len(body) > max_body:
            raise AioBodyTooLarge()
        coding = headers.get("content-encoding", "").lower().strip()
        if coding in ("gzip", "deflate", "x-gzip"):
            body = _decode(body, coding, max_body)
        elif coding not in ("", "identity"):
            raise AioTransportError("DecodingError", f"unsupported Content-Encoding {coding!r}")
        return status, headers, body, keep and not buf

    async def _chunked(self, conn: _Conn, max_body: int, timeout: float | None) -> bytes:
        buf = conn.buf
        out = bytearray()
        while True:
            while (nl := buf.find(b"\r\n")) < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise AioTransportError("RemoteProtocolError", "malformed chunk size")
                if conn.closed:
                    raise AioTransportError("ReadError", _ended(conn, "chunked body cut short"))
                await conn.wait(timeout)
            try:
                size = int(bytes(buf[:nl]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise AioTransportError("RemoteProtocolError", "malformed chunk size") from None
            if size < 0:
                raise AioTransportError("RemoteProtocolError", "malformed chunk size")
            del buf[: nl + 2]
            if size == 0:  # trailers until an empty line
                while True:
                    while (nl := buf.find(b"\r\n")) < 0:
                        if conn.closed:
                            raise AioTransportError("ReadError", _ended(conn, "chunked body cut short"))
                        await conn.wait(timeout)
                    line = bytes(buf[:nl])
                    del buf[: nl + 2]
                    if not line:
                        return bytes(out)
            if len(out) + size > max_body:
                raise AioBodyTooLarge()
            while len(buf) < size + 2:
                if conn.closed:
                    raise AioTransportError("ReadError", _ended(conn, "chunked body cut short"))
                await conn.wait(timeout)
            if buf[size : size + 2] != b"\r\n":
                raise AioTransportError("RemoteProtocolError", "malformed chunk")
            out += buf[:size]
            del buf[: size + 2]


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _expire_connect(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(AioTimeout("ConnectTimeout", "connect timed out"))


_FAMILIES: dict[str, int | None] = {}


def _ip_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for an IP literal, None for a name (those go through the resolver)."""
    family = _FAMILIES.get(host, -1)
    if family == -1:
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        except ValueError:
            family = None
        if len(_FAMILIES) < 100_000:
            _FAMILIES[host] = family
    return family


class _StaleConnection(Exception):
    pass


def _ended(conn: _Conn, what: str) -> str:
    return f"{what} ({type(conn.error).__name__})" if conn.error is not None else what


def _decode(body: bytes, coding: str, max_body: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, max_body + 1)
    except zlib.error:
        try:
            d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send it
            out = d.decompress(body, max_body + 1)
        except zlib.error as exc:
            raise AioTransportError("DecodingError", f"bad {coding} body: {exc}") from None
    if len(out) > max_body:
        raise AioBodyTooLarge()
    return out
