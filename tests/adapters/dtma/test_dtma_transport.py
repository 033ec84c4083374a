"""The DTMA client's connection layer (dtma_http) under single calls: keep-alive per toolbox, stale sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.adapters.dtma_client import DtmaClient
from reconciler.adapters.dtma_http import HttpTransport, _RawConn
from reconciler.model.secrets import Secret
from reconciler.ports import DtmaTarget
from tests.sim_helpers import running_simulator


def transport_of(client: DtmaClient) -> HttpTransport:
    return client._http


def test_one_kept_alive_connection_per_toolbox_is_reused() -> None:
    with running_simulator(toolboxes=2, shape="a") as sim, DtmaClient() as client:  # the older agent
        client.list(sim.targets[0])
        idle = transport_of(client)._idle
        ((origin, conn),) = idle.items()
        assert isinstance(conn, _RawConn)
        local = conn.sock.getsockname()
        for _ in range(3):
            client.list(sim.targets[0])
        assert list(idle) == [origin] and idle[origin] is conn
        assert conn.sock.getsockname() == local  # the same TCP connection served all four
        client.list(sim.targets[1])
        assert len(idle) == 2
        # shape a: the first listing learns that /tools/status is missing; the others go to /status at once
        assert sim.counters() == {"GET /tools/status": 2, "GET /status": 5}


def test_idle_connections_are_bounded_least_recently_used_first() -> None:
    with running_simulator(toolboxes=4) as sim, DtmaClient(concurrency=2) as client:  # at most 2 idle
        for target in sim.targets:
            client.list(target)
        ports = [int(a.rsplit(":", 1)[1]) for a in sim.addresses]
        assert [origin[2] for origin in transport_of(client)._idle] == ports[2:]
        assert all(not isinstance(r, Exception) for r in client.list_many(sim.targets).values())


@contextmanager
def closing_server(accepted: list[socket.socket], closed: threading.Event) -> Iterator[str]:
    """An HTTP/1.1 server that answers one request per connection, keeps-alive in name, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK")
            conn.close()
            closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_connection_the_server_closed_is_not_reused() -> None:
    accepted: list[socket.socket] = []
    closed = threading.Event()
    with closing_server(accepted, closed) as url, DtmaClient() as client:
        target = DtmaTarget("env-x", url, Secret("t"))
        assert client.health(target) is True
        assert closed.wait(10)
        assert client.health(target) is True  # a fresh connection, not the one the server closed
    assert len(accepted) == 2


def test_tls_context_is_built_once_and_only_when_needed() -> None:
    import ssl

    with DtmaClient(verify=False) as client:
        assert client._ssl is None  # plain http never loads the CA bundle
        context = client._context()
        assert context.verify_mode == ssl.CERT_NONE and client._context() is context
    with DtmaClient() as client:
        assert client._context().verify_mode == ssl.CERT_REQUIRED


def test_a_closed_client_can_be_used_again() -> None:
    with running_simulator(toolboxes=2, shape="c") as sim:
        client = DtmaClient()
        try:
            for _ in range(2):
                assert all(not isinstance(r, Exception) for r in client.list_many(sim.targets).values())
                assert client.list(sim.targets[0]).shape == "c"
                client.close()  # a new loop thread (and a new listing semaphore) on the next call
        finally:
            client.close()
        assert sim.counters() == {"GET /tools/status": 6}
