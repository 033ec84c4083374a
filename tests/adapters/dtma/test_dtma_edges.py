"""Hard edges of the DTMA client against hostile agents on loopback (tests/adapters/dtma/loopback.py) and the
simulator: a trickling agent, a deploy that gets no answer, an agent that echoes secrets, a token no header
can carry, and how many times a failing call is sent."""

from __future__ import annotations

import socket
import threading
import traceback
from collections.abc import Iterator

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.dtma_protocol import ANSWER_TEXT_LIMIT
from reconciler.errors import (
    ConfigError,
    DtmaAlreadyStoppedError,
    DtmaDeployTimeoutError,
    DtmaDockerUnavailableError,
    DtmaNameTakenError,
    DtmaServerError,
    DtmaTokenError,
    DtmaTransportError,
)
from reconciler.model.secrets import Secret
from reconciler.ports import DeployRequest, DtmaTarget
from reconciler.settings import from_environ
from tests.adapters.dtma.loopback import TOKEN, Request, answer, loopback
from tests.sim_helpers import running_simulator

SECRET = "echo-me-secret-4d1f8a"
LISTING = {"version": "1", "service": "DTMA", "tool_instances": []}


async def no_sleep(seconds: float) -> None:
    """The client's retry sleep, skipped."""


def client(**kwargs: float) -> DtmaClient:
    return DtmaClient(retry=RetryPolicy(attempts=3), sleep=no_sleep, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def dtma() -> Iterator[DtmaClient]:
    c = client(read_timeout=5)
    yield c
    c.close()


def request(name: str = "srv") -> DeployRequest:
    return DeployRequest(
        "img:1", name, f"id-{name}", env=(("API_KEY", Secret(SECRET)), ("LOG", "info")), port=8080
    )


def trickle(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    """Promise 1,000 bytes, then send one every 50 ms: each read sees progress, the answer never ends.
    At most 200 bytes (10 s), and it stops at once when the test ends or the client hangs up."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(200):
        if stop.wait(0.05):
            return
        conn.sendall(b" ")


def test_a_trickling_agent_cannot_hang_a_call_past_its_deadline() -> None:
    with loopback(trickle) as agent, client(read_timeout=5, call_deadline=0.5) as c:
        with pytest.raises(DtmaTransportError, match=r"no complete answer within the 0\.5 s deadline") as caught:
            c.list(agent.target())
        assert "RECONCILER_DTMA_CALL_DEADLINE" in str(caught.value)
        assert agent.count("GET", "/tools/status") == 1  # the deadline covers the retries too
        many = c.list_many([agent.target()])["env-loop"]
        assert isinstance(many, DtmaTransportError) and "deadline" in str(many)


def hang_on_deploy(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    if req.path == "/tools":
        stop.wait(10)  # pulling "forever": never answers while the test runs
        return
    conn.sendall(answer(200, LISTING))


def test_a_deploy_without_an_answer_is_never_sent_again() -> None:
    with loopback(hang_on_deploy) as agent, client(read_timeout=5, deploy_timeout=0.3) as c:
        with pytest.raises(DtmaDeployTimeoutError, match="not re-sent, poll the listing") as caught:
            c.deploy(agent.target(), request())
        assert not caught.value.retryable and isinstance(caught.value, DtmaTransportError)
        assert "RECONCILER_DTMA_DEPLOY_TIMEOUT" in str(caught.value)
        assert agent.count("POST", "/tools") == 1  # three tries allowed for idempotent calls, one POST sent
        assert c.list(agent.target()).containers == ()  # the client still works for the executor's polling


def slow_pull(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    if req.path == "/tools":
        stop.wait(0.4)  # the pull: longer than the listing read timeout, shorter than the deploy timeout
        body = {"success": True, "data": {"container_id": "c1", "state": {"Status": "running"}}}
        conn.sendall(answer(201, body))
        return
    conn.sendall(answer(200, LISTING))


def test_a_deploy_has_its_own_timeout_longer_than_a_listings() -> None:
    with loopback(slow_pull) as agent, client(read_timeout=0.1, deploy_timeout=30) as c:
        result = c.deploy(agent.target(), request())
    assert (result.container_id, result.state) == ("c1", "running")
    assert agent.count("POST", "/tools") == 1


def drop_deploy(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    conn.shutdown(socket.SHUT_RDWR)  # read it, then hang up: did the agent act on it? nobody knows


def test_a_deploy_whose_connection_drops_is_not_sent_again() -> None:
    with loopback(drop_deploy) as agent, client(read_timeout=5) as c:
        with pytest.raises(DtmaDeployTimeoutError, match="transport failure"):
            c.deploy(agent.target(), request())
        assert agent.count("POST", "/tools") == 1


def echo(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    text = "could not parse " + req.body.decode() + " because " + "it is long " * 100
    conn.sendall(answer(500, {"success": False, "message": "Failed to deploy", "error": text}))


def test_an_echoing_agent_leaks_no_secret_and_is_bounded(dtma: DtmaClient) -> None:
    with loopback(echo) as agent:
        with pytest.raises(DtmaServerError) as caught:
            dtma.deploy(agent.target(), request())
        assert SECRET.encode() in agent.requests[0].body  # it was sent, and echoed
    exc = caught.value
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    assert not [t for t in texts if SECRET in t or TOKEN in t]
    assert "API_KEY=[redacted]" in str(exc) and "LOG=info" in str(exc)
    # The toolbox is named by name and address, not by its id alone.
    where = f"POST /tools on loop-toolbox at {agent.url.split('://')[1]}: 500: "
    assert str(exc).startswith(where) and len(str(exc)) <= len(where) + ANSWER_TEXT_LIMIT


def docker_answers(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    if req.path.endswith("/stop"):
        conn.sendall(answer(500, {"success": False, "error": "(HTTP code 304) container already stopped -  "}))
    else:
        conflict = '(HTTP code 409) unexpected - Conflict. The container name "/srv" is already in use by "781a".'
        conn.sendall(answer(500, {"success": False, "message": "Failed to deploy tool 'srv'.", "error": conflict}))


def test_docker_codes_in_a_500_are_sent_once(dtma: DtmaClient) -> None:
    with loopback(docker_answers) as agent:
        with pytest.raises(DtmaAlreadyStoppedError):
            dtma.stop(agent.target(), "srv")
        with pytest.raises(DtmaNameTakenError, match="does not manage"):
            dtma.deploy(agent.target(), request())
        assert agent.count("POST", "/tools/srv/stop") == 1 and agent.count("POST", "/tools") == 1


def test_a_stop_against_an_agent_answering_500_is_sent_three_times(dtma: DtmaClient) -> None:
    with running_simulator() as sim:
        sim.sim.set_faults(0, error_rate={"*": 1.0})
        with pytest.raises(DtmaServerError):
            dtma.stop(sim.target(0), "srv")
        assert sim.counters(0) == {"POST /tools/{name}/stop": 3}


def test_a_token_outside_latin1_is_a_configuration_error_not_a_crash(dtma: DtmaClient) -> None:
    with loopback(docker_answers) as agent:
        target = DtmaTarget("env-loop", agent.url, Secret("tök€n"))
        with pytest.raises(DtmaTokenError, match="outside Latin-1") as caught:
            dtma.list(target)
        assert isinstance(caught.value, ConfigError)
        assert isinstance(dtma.list_many([target])["env-loop"], DtmaTokenError)  # the toolbox is unobserved
        assert agent.requests == []
    with pytest.raises(ConfigError, match="BACKEND_TO_DTMA_API_KEY holds characters outside Latin-1") as bad:
        from_environ({"BACKEND_TO_DTMA_API_KEY": "tök€n"})
    assert "tök€n" not in str(bad.value)
    with pytest.raises(ConfigError, match="DTMA_BEARER_TOKEN"):
        from_environ({"DTMA_BEARER_TOKEN": "tök€n"})


def test_the_timeouts_are_settings() -> None:
    s = from_environ({"RECONCILER_DTMA_DEPLOY_TIMEOUT": "900", "RECONCILER_DTMA_CALL_DEADLINE": "45"})
    assert (s.dtma_deploy_timeout, s.dtma_call_deadline) == (900.0, 45.0)
    assert (from_environ({}).dtma_deploy_timeout, from_environ({}).dtma_call_deadline) == (600.0, 60.0)
    with pytest.raises(ConfigError, match="RECONCILER_DTMA_DEPLOY_TIMEOUT"):
        from_environ({"RECONCILER_DTMA_DEPLOY_TIMEOUT": "soon"})


def docker_down(req: Request, conn: socket.socket, stop: threading.Event) -> None:
    body = {
        "status": "healthy",
        "version": "0.1.0",
        "tool_instances": [{"error": "connect ENOENT /var/run/docker.sock"}],
    }
    conn.sendall(answer(200, body))


def test_an_agent_that_cannot_reach_docker_is_unobserved_never_empty(dtma: DtmaClient) -> None:
    with loopback(docker_down) as agent:
        with pytest.raises(DtmaDockerUnavailableError, match="cannot reach Docker"):
            dtma.list(agent.target())
        assert isinstance(dtma.list_many([agent.target()])["env-loop"], DtmaDockerUnavailableError)


def test_a_url_no_request_can_be_made_of_is_a_dtma_error(dtma: DtmaClient) -> None:
    target = DtmaTarget("env-ftp", "ftp://127.0.0.1:1", Secret(TOKEN))
    result = dtma.list_many([target])["env-ftp"]  # one toolbox's error, not the whole observation's
    assert isinstance(result, DtmaTransportError) and "UnsupportedProtocol" in str(result)
