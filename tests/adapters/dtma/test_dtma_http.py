"""``list_many``'s asyncio GET path (reconciler/adapters/dtma_aio.py) against raw HTTP servers and the simulator.

The raw servers answer scripted bytes over real sockets on loopback, to reach what the simulator never sends:
chunked and gzip bodies, bodies read to the close, a server that hangs up.
"""

from __future__ import annotations

import gzip
import json
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.core.observed import LiveListing
from reconciler.errors import DtmaResponseError, DtmaServerError, DtmaTransportError
from reconciler.model.secrets import Secret
from reconciler.ports import DtmaTarget
from reconciler.simulator import Simulator
from tests.sim_helpers import running_simulator

TOKEN = "aio-test-token-3b9e1f"
TLS = Path(__file__).parents[2] / "fixtures" / "tls"
LISTING = json.dumps(
    {
        "dtma_version": "1.0.0",
        "tool_instances": [
            {"account_tool_instance_id": "id-1", "instance_name_on_toolbox": "context7", "status": "running"}
        ],
    }
).encode()


async def no_sleep(seconds: float) -> None:
    """The client's retry sleep, skipped."""


def recording(calls: list[float]) -> Callable[[float], Awaitable[None]]:
    """A retry sleep that only notes how long it was asked to wait."""

    async def sleep(seconds: float) -> None:
        calls.append(seconds)

    return sleep


Answer = Callable[[bytes], bytes | None]  # request head -> raw response (None: hang up without answering)


@dataclass
class RawServer:
    url: str
    accepted: list[socket.socket] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)

    def target(self, token: str = TOKEN) -> DtmaTarget:
        return DtmaTarget("env-raw", self.url, Secret(token))


@contextmanager
def raw_server(answer: Answer, *, close_after: bool = False) -> Iterator[RawServer]:
    """A loopback HTTP/1.1 server: each request head is passed to ``answer``, whose bytes are sent back."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = RawServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def connection(conn: socket.socket) -> None:
        data = b""
        with conn:
            while not stop.is_set():
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                server.requests.append(head)
                reply = answer(head)
                if reply is None:
                    return
                conn.sendall(reply)
                if close_after:
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            server.accepted.append(conn)
            threading.Thread(target=connection, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)


def response(body: bytes, *, status: str = "200 OK", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


def chunked(body: bytes, size: int) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    chunks = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + chunks + b"0\r\nX-Trailer: yes\r\n\r\n"


def one(client: DtmaClient, target: DtmaTarget) -> LiveListing | Exception:
    return client.list_many([target])[target.environment_id]


@pytest.fixture
def client() -> Iterator[DtmaClient]:
    c = DtmaClient(read_timeout=2, retry=RetryPolicy(attempts=1), sleep=no_sleep)
    yield c
    c.close()


def test_chunked_body_with_extensions_and_trailers(client: DtmaClient) -> None:
    with raw_server(lambda head: chunked(LISTING, 7)) as srv:
        listing = one(client, srv.target())
    assert isinstance(listing, LiveListing)
    assert [c.name for c in listing.containers] == ["context7"] and listing.dtma_version == "1.0.0"
    head = srv.requests[0].decode()
    assert head.startswith("GET /tools/status HTTP/1.1\r\n") and f"Authorization: Bearer {TOKEN}" in head
    assert "Host: 127.0.0.1:" in head and "Accept: application/json" in head


def test_gzip_body_and_a_body_read_to_the_close(client: DtmaClient) -> None:
    packed = gzip.compress(LISTING)
    gz = response(packed, headers="Content-Encoding: gzip\r\n")
    with raw_server(lambda head: gz) as srv:
        assert isinstance(one(client, srv.target()), LiveListing)
    to_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + LISTING
    with raw_server(lambda head: to_close, close_after=True) as srv:
        listing = one(client, srv.target())
        assert isinstance(listing, LiveListing) and listing.containers[0].instance_id == "id-1"
        assert isinstance(one(client, srv.target()), LiveListing)
        assert len(srv.accepted) == 2  # a body read to the close never leaves a connection to reuse


def test_keep_alive_one_connection_serves_the_fallback_and_the_next_call(client: DtmaClient) -> None:
    def answer(head: bytes) -> bytes:
        if head.startswith(b"GET /tools/status "):  # Express's answer for a route it does not have
            return response(b"Cannot GET /tools/status", status="404 Not Found")
        return response(json.dumps({"dtma_version": "2", "tool_instances": []}).encode())

    with raw_server(answer) as srv:
        for _ in range(3):
            listing = one(client, srv.target())
            assert isinstance(listing, LiveListing) and listing.containers == ()
        # the missing route is learnt once: later listings of this agent cost one call
        assert [r.split(b" ")[1] for r in srv.requests] == [b"/tools/status", b"/status", b"/status", b"/status"]
        assert len(srv.accepted) == 1


def test_keep_alive_against_the_simulator_and_the_idle_bound() -> None:
    with running_simulator(toolboxes=4, shape="c") as sim, DtmaClient(concurrency=2) as client:
        results = client.list_many(sim.targets)
        assert all(isinstance(r, LiveListing) and r.shape == "c" for r in results.values())
        assert len(client._http._idle) == 2  # at most `concurrency` idle connections
        results = client.list_many(sim.targets)
        assert all(isinstance(r, LiveListing) for r in results.values())
        assert sim.counters() == {"GET /tools/status": 8}


def test_a_kept_alive_connection_the_server_closed_is_replaced(client: DtmaClient) -> None:
    closes = response(LISTING, headers="Connection: keep-alive\r\n")
    with raw_server(lambda head: closes, close_after=True) as srv:  # keep-alive in name, closes anyway
        assert isinstance(one(client, srv.target()), LiveListing)
        deadline = time.monotonic() + 5
        while client._http._idle and time.monotonic() < deadline:  # the loop sees the EOF by itself
            time.sleep(0.01)
        assert not client._http._idle  # a connection the server closed leaves the idle pool at once
        assert isinstance(one(client, srv.target()), LiveListing)
        assert len(srv.accepted) == 2


def test_a_server_that_hangs_up_is_a_transport_error(client: DtmaClient) -> None:
    with raw_server(lambda head: None) as srv:
        result = one(client, srv.target())
    assert isinstance(result, DtmaTransportError) and result.retryable
    assert "transport failure (RemoteProtocolError)" in str(result) and TOKEN not in str(result)
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + LISTING
    with raw_server(lambda head: cut, close_after=True) as srv:
        result = one(client, srv.target())
    assert isinstance(result, DtmaTransportError) and "transport failure (ReadError)" in str(result)
    with raw_server(lambda head: b"SPDY/9 nonsense\r\n\r\n") as srv:
        result = one(client, srv.target())
    assert isinstance(result, DtmaTransportError) and "RemoteProtocolError" in str(result)


def test_refused_connection_is_a_connect_error(client: DtmaClient) -> None:
    with raw_server(lambda head: None) as srv:
        target = srv.target()
    result = one(client, target)
    assert isinstance(result, DtmaTransportError) and "transport failure (ConnectError)" in str(result)


def test_read_timeout_is_bounded_and_retried_with_backoff() -> None:
    sleeps: list[float] = []
    with running_simulator(faults={"latency": 0.5}) as sim:
        c = DtmaClient(
            read_timeout=0.1, retry=RetryPolicy(attempts=2), sleep=recording(sleeps), rng=random.Random(1)
        )
        try:
            result = one(c, sim.target(0))
        finally:
            c.close()
        assert isinstance(result, DtmaTransportError) and "timed out (ReadTimeout)" in str(result)
        assert len(sleeps) == 1
        assert sim.counters(0)["GET /tools/status"] == 2


def test_server_errors_are_retried_then_returned() -> None:
    sleeps: list[float] = []
    with running_simulator() as sim:
        sim.sim.set_faults(0, error_rate={"GET /tools/status": 1.0})
        c = DtmaClient(
            retry=RetryPolicy(attempts=3, base_delay=0.1), sleep=recording(sleeps), rng=random.Random(1)
        )
        try:
            result = one(c, sim.target(0))
        finally:
            c.close()
        assert isinstance(result, DtmaServerError) and result.status_code == 500
        assert sim.counters(0)["GET /tools/status"] == 3 and len(sleeps) == 2


@pytest.mark.parametrize("form", ["content-length", "chunked", "to-close"])
def test_oversize_bodies_are_refused(form: str) -> None:
    big = json.dumps({"tool_instances": [], "pad": "x" * 5000}).encode()
    reply = {
        "content-length": response(big),
        "chunked": chunked(big, 1000),
        "to-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + big,
    }[form]
    c = DtmaClient(max_body_bytes=2000, retry=RetryPolicy(attempts=1))
    try:
        with raw_server(lambda head: reply, close_after=form == "to-close") as srv:
            result = one(c, srv.target())
    finally:
        c.close()
    assert isinstance(result, DtmaResponseError) and "larger than 2000 bytes" in str(result)


def test_tls_trusted_and_untrusted() -> None:
    with Simulator(
        toolboxes=1, shape="a", token=TOKEN, tls_cert=str(TLS / "server.pem"), tls_key=str(TLS / "server.key")
    ) as sim:
        target = DtmaTarget("env-0", sim.base_url(0), Secret(TOKEN))
        assert target.base_url.startswith("https://")
        trusting = DtmaClient(verify=str(TLS / "ca.pem"))
        try:
            for _ in range(2):  # the second call reuses the TLS connection
                listing = one(trusting, target)
                assert isinstance(listing, LiveListing) and listing.containers == ()
        finally:
            trusting.close()
        untrusting = DtmaClient(verify=True, retry=RetryPolicy(attempts=3), sleep=no_sleep)
        try:
            result = one(untrusting, target)
        finally:
            untrusting.close()
        assert sim.counters(0)["GET /status"] == 2  # the untrusting client never got a request through
    assert isinstance(result, DtmaTransportError) and not result.retryable
    assert "certificate is not trusted" in str(result)
    assert TOKEN not in str(result) and TOKEN not in repr(result) and TOKEN not in repr(result.__cause__)


def test_the_token_is_not_in_any_repr() -> None:
    from reconciler.adapters.dtma_http import endpoint

    ep = endpoint("http://127.0.0.1:1", "/status", [("Authorization", "Bearer " + TOKEN)])
    assert TOKEN in ep.request.decode() and TOKEN not in repr(ep)
    with DtmaClient() as c:
        assert TOKEN not in repr(c) and TOKEN not in repr(c._http)


def test_a_request_larger_than_the_socket_buffer_is_written_in_parts() -> None:
    big = "t" * (4 * 1024 * 1024)  # a token no socket buffer takes in one send
    with raw_server(lambda head: response(LISTING)) as srv, DtmaClient(read_timeout=5) as c:
        result = one(c, srv.target(big))
        assert isinstance(result, LiveListing) and result.containers[0].name == "context7"
        assert len(srv.requests) == 1 and srv.requests[0].endswith(
            b"Bearer " + big.encode() + b"\r\nUser-Agent: mcp-reconciler"
        )


def test_ip_addresses_use_raw_sockets_and_host_names_the_asyncio_transport() -> None:
    from reconciler.adapters.dtma_http import _Conn, _RawConn

    with raw_server(lambda head: response(LISTING)) as srv, DtmaClient(read_timeout=5) as c:
        assert isinstance(one(c, srv.target()), LiveListing)
        (raw,) = c._http._idle.values()
        assert type(raw) is _RawConn
        named = DtmaTarget("env-named", srv.url.replace("127.0.0.1", "localhost"), Secret(TOKEN))
        assert isinstance(one(c, named), LiveListing)
        kinds = {origin[1]: type(conn) for origin, conn in c._http._idle.items()}
        assert kinds == {"127.0.0.1": _RawConn, "localhost": _Conn}
        assert b"Host: localhost:" in srv.requests[-1]
