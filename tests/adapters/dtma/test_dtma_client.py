"""The DTMA client against the simulator over real HTTP on loopback."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.adapters.dtma_client import DtmaClient, DtmaForgottenError, RetryPolicy, is_forgotten
from reconciler.errors import (
    DtmaAuthError,
    DtmaConflictError,
    DtmaNotFoundError,
    DtmaResponseError,
    DtmaServerError,
    DtmaTransportError,
)
from reconciler.model.secrets import Secret
from reconciler.ports import DeployRequest, DtmaTarget
from tests.sim_helpers import FakeClock, running_simulator


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sleeps: Sleeps) -> Iterator[DtmaClient]:
    c = DtmaClient(
        read_timeout=5, retry=RetryPolicy(attempts=3, base_delay=0.1), sleep=sleeps, rng=random.Random(1)
    )
    yield c
    c.close()


def deploy_req(name: str = "context7", host_port: int | None = 31001) -> DeployRequest:
    return DeployRequest(
        image="ghcr.io/upstash/context7-mcp:1.0.6",
        name=name,
        instance_id=f"id-{name}",
        env=(("LOG_LEVEL", "info"), ("API_KEY", Secret("s3cr3t-value"))),
        port=8080,
        host_port=host_port,
    )


@pytest.mark.parametrize("shape", ["a", "b", "c"])
def test_every_route_in_every_shape(client: DtmaClient, shape: str) -> None:
    with running_simulator(shape=shape) as sim:
        t = sim.target(0)
        assert client.health(t) is True
        result = client.deploy(t, deploy_req())
        assert result.state == "running" and result.container_id
        assert sim.sim.env_of(0, "context7") == ["LOG_LEVEL=info", "API_KEY=s3cr3t-value"]
        listing = client.list(t)
        assert listing.shape == ("c" if shape == "b" else shape)  # /tools/status wherever the agent has it
        c = listing.by_name()["context7"]
        assert c.state == "running"
        client.stop(t, "context7")
        assert client.list(t).by_name()["context7"].state == "exited"
        client.start(t, "context7")
        assert client.list(t).by_name()["context7"].state == "running"
        client.delete(t, "context7")
        assert "context7" not in client.list(t).by_name()
        counts = sim.counters(0)
        assert counts["POST /tools"] == 1
        assert counts["POST /tools/{name}/stop"] == 1
        assert counts["POST /tools/{name}/start"] == 1
        assert counts["DELETE /tools/{name}"] == 1
        if shape == "a":  # no /tools/status: learnt on the first listing, /status from then on
            assert counts["GET /tools/status"] == 1 and counts["GET /status"] == 4
        else:  # the authenticated listing; the public /status is never read
            assert counts["GET /tools/status"] == 4 and "GET /status" not in counts


def test_an_agent_with_both_listings_is_read_on_the_managed_one(client: DtmaClient) -> None:
    with running_simulator(shape="b") as sim:
        client.deploy(sim.target(0), deploy_req())
        listing = client.list(sim.target(0))
        by = listing.by_name()
        assert set(by) == {"context7"}  # the agent's own containers are on the public /status only
        assert by["context7"].instance_id == "id-context7"  # ownership by id, not by name alone
        # no HostIp was sent: Docker binds both address families and lists each
        assert [(p.container_port, p.host_port, p.host_ip) for p in by["context7"].ports] == [
            (8080, 31001, "0.0.0.0"),
            (8080, 31001, "::"),
        ]
        assert sim.counters(0)["GET /tools/status"] == 1 and "GET /status" not in sim.counters(0)


def test_start_delay_moves_created_to_running(client: DtmaClient) -> None:
    clock = FakeClock()
    with running_simulator(start_delay=5, clock=clock) as sim:
        assert client.deploy(sim.target(0), deploy_req()).state == "created"
        assert client.list(sim.target(0)).by_name()["context7"].state == "created"
        clock.advance(5)
        assert client.list(sim.target(0)).by_name()["context7"].state == "running"


def test_container_that_exits(client: DtmaClient) -> None:
    clock = FakeClock()
    with running_simulator(clock=clock) as sim:
        client.deploy(sim.target(0), deploy_req())
        sim.admin(0, "POST", "/__sim/exit-after", {"name": "context7", "seconds": 3})
        assert client.list(sim.target(0)).by_name()["context7"].state == "running"
        clock.advance(3)
        assert client.list(sim.target(0)).by_name()["context7"].state == "exited"


def test_conflicts_and_not_found(client: DtmaClient, sleeps: Sleeps) -> None:
    with running_simulator() as sim:
        t = sim.target(0)
        client.deploy(t, deploy_req())
        with pytest.raises(DtmaConflictError, match="already exists") as name_conflict:
            client.deploy(t, deploy_req())
        assert name_conflict.value.status_code == 409 and not name_conflict.value.retryable
        with pytest.raises(DtmaConflictError, match="Port conflict"):
            client.deploy(t, deploy_req("other"))
        with pytest.raises(DtmaNotFoundError, match="nothing-here") as nf:
            client.stop(t, "nothing-here")
        assert not isinstance(nf.value, DtmaForgottenError)
        assert sim.counters(0)["POST /tools"] == 3  # no retry of POST /tools
        assert sleeps.calls == []


def test_auth_errors_say_which(client: DtmaClient) -> None:
    with running_simulator() as sim:
        with pytest.raises(DtmaAuthError, match=r"403.*wrong.*BACKEND_TO_DTMA_API_KEY") as wrong:
            client.list(sim.target(0, token="not-the-token"))
        assert wrong.value.status_code == 403 and not wrong.value.retryable
        with pytest.raises(DtmaAuthError, match=r"401.*missing or malformed"):
            client.list(sim.target(0, token="two words"))
        # a rejected token is never retried, and never answered by falling back to another listing
        assert sim.counters(0) == {"GET /tools/status": 2}
        with pytest.raises(DtmaAuthError, match="no usable bearer token"):
            client.list(sim.target(0, token=" "))
        assert sim.counters(0) == {"GET /tools/status": 2}  # refused before sending


def test_forgotten_names(client: DtmaClient) -> None:
    with running_simulator(shape="a") as sim:
        t = sim.target(0)
        client.deploy(t, deploy_req())
        before = client.list(t)
        sim.admin(0, "POST", "/__sim/forget")
        with pytest.raises(DtmaForgottenError, match="forgot") as exc:
            client.stop(t, "context7")
        assert exc.value.forgotten and exc.value.status_code == 404
        assert is_forgotten(before, "context7", exc.value)
        assert "context7" not in client.list(t).by_name()  # shape a lists managed names only
        assert not is_forgotten(before, "other", exc.value)


def test_forgotten_names_still_listed_in_shape_b(client: DtmaClient) -> None:
    with running_simulator(shape="b") as sim:
        t = sim.target(0)
        client.deploy(t, deploy_req())
        assert client.list(t).by_name()["context7"].state == "running"
        sim.sim.toolbox(0).forget()
        with pytest.raises(DtmaForgottenError):
            client.delete(t, "context7")


def test_retry_after_5xx_then_success(client: DtmaClient, sleeps: Sleeps) -> None:
    with running_simulator(shape="c") as sim:
        sim.sim.set_faults(0, error_rate={"GET /tools/status": 1.0})
        with pytest.raises(DtmaServerError) as exc:
            client.list(sim.target(0))
        assert exc.value.retryable and exc.value.status_code == 500
        assert sim.counters(0)["GET /tools/status"] == 3
        assert len(sleeps.calls) == 2 and all(0 <= s <= 0.2 for s in sleeps.calls)

        # one 5xx, then the fault clears during the backoff sleep: the second attempt succeeds
        async def clear_then_sleep(seconds: float) -> None:
            sim.sim.clear_faults(0)

        c2 = DtmaClient(retry=RetryPolicy(attempts=3), sleep=clear_then_sleep)
        sim.sim.set_faults(0, error_rate={"*": 1.0})
        try:
            assert c2.list(sim.target(0)).containers == ()
        finally:
            c2.close()
        assert sim.counters(0)["GET /tools/status"] == 5


def test_deploy_5xx_is_not_retried(client: DtmaClient, sleeps: Sleeps) -> None:
    with running_simulator() as sim:
        sim.sim.set_faults(0, error_rate={"POST /tools": 1.0})
        with pytest.raises(DtmaServerError):
            client.deploy(sim.target(0), deploy_req())
        assert sim.counters(0)["POST /tools"] == 1 and sleeps.calls == []


def test_read_timeout_is_a_bounded_transport_error(sleeps: Sleeps) -> None:
    with running_simulator() as sim:
        sim.sim.set_faults(0, latency=0.5)
        c = DtmaClient(read_timeout=0.1, retry=RetryPolicy(attempts=2), sleep=sleeps)
        try:
            with pytest.raises(DtmaTransportError, match="timed out") as exc:
                c.list(sim.target(0))
        finally:
            c.close()
        assert exc.value.retryable
        assert sim.counters(0)["GET /tools/status"] == 2


def test_hang_and_dropped_connection(sleeps: Sleeps) -> None:
    with running_simulator() as sim:
        c = DtmaClient(read_timeout=0.2, retry=RetryPolicy(attempts=1), sleep=sleeps)
        try:
            sim.sim.set_faults(0, hang=True, hang_max=5)
            with pytest.raises(DtmaTransportError):
                c.list(sim.target(0))
            sim.sim.clear_faults(0)
            sim.sim.set_faults(0, drop=True)
            with pytest.raises(DtmaTransportError, match="transport failure"):
                c.list(sim.target(0))
            sim.sim.clear_faults(0)
            assert c.list(sim.target(0)).containers == ()
        finally:
            c.close()


def test_refused_connection_is_transport_error(client: DtmaClient, sleeps: Sleeps) -> None:
    with running_simulator() as sim:
        target = sim.target(0)
    with pytest.raises(DtmaTransportError):
        client.list(target)
    assert len(sleeps.calls) == 2
    assert client.health(target) is False


def test_body_size_limit() -> None:
    with running_simulator() as sim:
        c = DtmaClient(max_body_bytes=2000)
        try:
            for i in range(30):
                c.deploy(sim.target(0), deploy_req(f"srv-{i}", host_port=None))
            with pytest.raises(DtmaResponseError, match="larger than 2000 bytes"):
                c.list(sim.target(0))
        finally:
            c.close()


def test_unparseable_listing_is_response_error(client: DtmaClient) -> None:
    # /health answers text: point the client at a path that answers something that is not a listing; the
    # kind agent's listing routes follow its shape, which the test switches while it runs
    with running_simulator(mode="kind", shape="a") as sim:
        sim.sim.toolbox(0).shape = "c"  # /status 404s and /tools/status serves shape c: still parseable
        assert client.list(sim.target(0)).shape == "c"
        sim.sim.toolbox(0).shape = "x"  # neither route exists: the 404 of the fallback is reported
        with pytest.raises(DtmaNotFoundError, match="GET /status"):
            client.list(sim.target(0))


def test_list_many_concurrently_returns_failures(client: DtmaClient) -> None:
    with running_simulator(toolboxes=4, shape="b") as sim:
        sim.sim.set_faults(2, error_rate={"*": 1.0})
        targets = sim.targets
        targets[3] = DtmaTarget("env-3", targets[3].base_url, Secret("wrong"))
        results = client.list_many(targets)
        assert set(results) == {"env-0", "env-1", "env-2", "env-3"}
        assert results["env-0"].shape == "c"  # type: ignore[union-attr]
        assert isinstance(results["env-2"], DtmaServerError)
        assert isinstance(results["env-3"], DtmaAuthError)


def test_list_many_is_concurrent() -> None:
    # Every listing waits until all 20 are in flight at once: a client that lists one toolbox after another
    # breaks the barrier (its first request waits in vain) and gets 503s instead of listings.
    n = 20
    barrier = threading.Barrier(n, timeout=10)
    body = json.dumps({"dtma_version": "1.0.0", "tool_instances": []}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            try:
                barrier.wait()
                status = 200
            except threading.BrokenBarrierError:
                status = 503
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    c = DtmaClient(concurrency=n, read_timeout=30, retry=RetryPolicy(attempts=1), sleep=lambda s: None)
    try:
        results = c.list_many([DtmaTarget(f"env-{i}", url, Secret("t")) for i in range(n)])
    finally:
        c.close()
        server.shutdown()
        server.server_close()
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert len(results) == n and not barrier.broken


def test_repr_has_no_token(client: DtmaClient) -> None:
    with running_simulator() as sim:
        assert sim.token not in repr(sim.target(0))
        assert sim.token not in repr(client)
