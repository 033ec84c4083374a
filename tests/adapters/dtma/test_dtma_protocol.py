"""The pure half of the client (reconciler/adapters/dtma_protocol.py): answers classified by their meaning,
on the answers recorded from the real agents (tests/fixtures/dtma-samples), retry decisions, redaction."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.dtma_listing import parse_listing
from reconciler.adapters.dtma_protocol import (
    ANSWER_TEXT_LIMIT,
    Call,
    RetryPolicy,
    agent_text,
    bearer,
    classify,
    deploy_call,
    is_missing_route,
    next_delay,
)
from reconciler.errors import (
    ConfigError,
    DtmaAlreadyStoppedError,
    DtmaAuthError,
    DtmaClientError,
    DtmaConflictError,
    DtmaDockerUnavailableError,
    DtmaError,
    DtmaNameHeldError,
    DtmaNameTakenError,
    DtmaNoSuchContainerError,
    DtmaNotFoundError,
    DtmaPortConflictError,
    DtmaServerError,
    DtmaTokenError,
    DtmaTransportError,
)
from reconciler.model.secrets import Secret
from reconciler.ports import DeployRequest

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "dtma-samples"
REAL = json.loads((SAMPLES / "real-agent-answers.json").read_text())
ERRORS = json.loads((SAMPLES / "errors.json").read_text())

STOP = Call("POST", "/tools/x/stop")
START = Call("POST", "/tools/x/start")
DELETE = Call("DELETE", "/tools/x")
DEPLOY = Call("POST", "/tools", idempotent=False, deploy=True)


def call_for(request: str) -> Call:
    return {
        "POST /tools": DEPLOY,
        "POST /tools/{name}/stop": STOP,
        "POST /tools/{name}/start": START,
        "DELETE /tools/{name}": DELETE,
    }[request]


def meaning(call: Call, status: int, body: Any) -> DtmaError | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify(call, status, raw, "where")


# Each answer recorded from the real (newer) agent, in file order, and what it means.
REAL_MEANINGS: list[type[DtmaError] | None] = [
    None,  # deploy 201
    None,  # delete 200
    DtmaAlreadyStoppedError,  # stop of an exited container: 500 wrapping Docker's 304
    None,  # stop 200
    DtmaAuthError,  # 403, wrong token
    DtmaNameTakenError,  # 500 wrapping Docker's 409 name conflict (a container the agent does not manage)
    DtmaNameHeldError,  # 409 for a name the agent still remembers after a docker rm
    DtmaNotFoundError,  # 404 after the agent restarted
    DtmaNotFoundError,  # 404 after the agent restarted
]


def test_every_recorded_real_answer_is_classified_by_its_meaning() -> None:
    answers = REAL["answers"]
    assert len(answers) == len(REAL_MEANINGS)
    for answer, expected in zip(answers, REAL_MEANINGS, strict=True):
        got = meaning(call_for(answer["request"]), answer["status"], answer["body"])
        if expected is None:
            assert got is None, answer
        else:
            assert type(got) is expected, (answer, got)
            assert got is not None and got.status_code == answer["status"] and not got.retryable


@pytest.mark.parametrize(
    ("key", "call", "expected", "retryable"),
    [
        ("401", STOP, DtmaAuthError, False),
        ("403", STOP, DtmaAuthError, False),
        ("404_tool", STOP, DtmaNotFoundError, False),
        ("404_route", STOP, DtmaNotFoundError, False),
        ("409_name", DEPLOY, DtmaNameHeldError, False),
        ("409_port", DEPLOY, DtmaPortConflictError, False),
        ("500_deploy", DEPLOY, DtmaServerError, False),  # Docker's 404 on a pull: no retry can help
        ("500_internal", STOP, DtmaServerError, True),
        ("400", DEPLOY, DtmaClientError, False),
    ],
)
def test_the_sample_error_bodies(key: str, call: Call, expected: type[DtmaError], retryable: bool) -> None:
    got = meaning(call, int(key[:3]), ERRORS[key])
    assert type(got) is expected and got is not None and got.retryable is retryable


@pytest.mark.parametrize(
    ("call", "status", "body", "expected"),
    [
        (STOP, 304, b"", DtmaAlreadyStoppedError),  # the older agent: a bare 304
        (START, 304, b"", None),  # already running is what a start wants
        (START, 500, {"error": "(HTTP code 304) container already started - "}, None),
        (STOP, 404, {"error": "No such container: x"}, DtmaNoSuchContainerError),  # the older agent
        (
            DELETE,
            500,
            {"error": "(HTTP code 404) no such container - No such container: 9a1f"},
            DtmaNoSuchContainerError,
        ),
        (STOP, 500, {"error": "(HTTP code 404) no such container - "}, DtmaNoSuchContainerError),
        (DEPLOY, 409, {"error": "something else"}, DtmaConflictError),
        (STOP, 502, b"<html>Bad Gateway</html>", DtmaServerError),
        (STOP, 200, {"error": "(HTTP code 304) only a word in a success"}, None),
    ],
)
def test_docker_codes_inside_answers(call: Call, status: int, body: Any, expected: type[DtmaError] | None) -> None:
    got = meaning(call, status, body)
    assert (None if got is None else type(got)) is expected
    if got is not None and expected is not DtmaServerError:
        assert not got.retryable  # 304, 404 and 409 meanings do not change on a retry


def test_a_missing_route_is_told_from_a_missing_instance() -> None:
    assert is_missing_route(404, json.dumps(ERRORS["404_route"]).encode())
    assert is_missing_route(404, b"<pre>Cannot GET /tools/status</pre>")
    assert not is_missing_route(404, json.dumps(ERRORS["404_tool"]).encode())
    assert not is_missing_route(401, json.dumps(ERRORS["401"]).encode())
    assert not is_missing_route(200, b'{"error":"Not Found"}')


def test_a_docker_unreachable_listing_is_unobserved_never_empty() -> None:
    body = {
        "status": "healthy",
        "version": "0.1.0",
        "tool_instances": [{"error": "connect ENOENT /var/run/docker.sock"}],
    }
    with pytest.raises(DtmaDockerUnavailableError, match=r"cannot reach Docker.*ENOENT") as caught:
        parse_listing("env-1", body)
    assert caught.value.retryable
    public = REAL["GET /status (public, no token checked; every container on the host)"]
    (fetch,) = parse_listing("env-1", public).containers  # a real listing still parses
    assert (fetch.name, fetch.state, fetch.ports) == ("fetch", "running", ())


def test_retry_decisions() -> None:
    policy, rng = RetryPolicy(attempts=3, base_delay=1.0, max_delay=5.0), random.Random(7)
    transport = DtmaTransportError("x")
    delays = [next_delay(policy, STOP, a, transport, rng=rng, remaining=100) for a in range(3)]
    assert delays[2] is None  # three tries in all
    assert delays[0] is not None and 0 <= delays[0] <= 1.0 and delays[1] is not None and 0 <= delays[1] <= 2.0
    assert next_delay(policy, DEPLOY, 0, transport, rng=rng, remaining=100) is None  # POST /tools: never again
    assert next_delay(policy, STOP, 0, DtmaAuthError("x"), rng=rng, remaining=100) is None
    assert next_delay(policy, STOP, 0, transport, rng=rng, remaining=0.0) is None  # the deadline is spent
    full = RetryPolicy(attempts=9, base_delay=1.0, max_delay=5.0)
    seen = [full.delay(8, random.Random(i)) for i in range(200)]
    assert max(seen) <= 5.0 and min(seen) < 0.5  # full jitter: anywhere from 0 to the capped backoff


def test_tokens_no_header_can_carry_are_refused_before_sending() -> None:
    with pytest.raises(DtmaTokenError, match=r"outside Latin-1.*BACKEND_TO_DTMA_API_KEY") as caught:
        bearer(Secret("tök€n"), "GET /tools/status on e at 127.0.0.1:1")
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, DtmaAuthError)
    assert "tök€n" not in str(caught.value)
    assert bearer(Secret(" tok "), "w") == "Bearer tok"
    with pytest.raises(DtmaAuthError, match="no usable bearer token"):
        bearer(Secret("a\r\nX-Evil: 1"), "w")


def test_agent_text_is_redacted_then_bounded() -> None:
    secret = "s3cr3t-" + "v" * 40
    request = DeployRequest("img:1", "srv", "id-1", env=(("KEY", Secret(secret)), ("LOG", "info")))
    call = deploy_call(request)
    assert call.secrets == (secret,) and secret.encode() in (call.body or b"")
    assert secret not in repr(call)
    echo = {"success": False, "error": "bad body " + (call.body or b"").decode() + " x" * 400}
    got = meaning(call, 500, echo)
    assert got is not None and secret not in str(got) and "s3cr3t" not in str(got)
    assert "KEY=[redacted]" in str(got) and "LOG=info" in str(got)
    assert len(agent_text(json.dumps(echo).encode(), call.secrets)) <= ANSWER_TEXT_LIMIT
    # a secret cut in half by the bound must not leave its first half behind: redaction comes first
    late = {"error": "x" * (ANSWER_TEXT_LIMIT - 10) + secret}
    assert "s3cr3t" not in agent_text(json.dumps(late).encode(), (secret,))
    # JSON-escaped echoes are caught too, and control characters cannot forge output lines
    quoted = 'p"w\\d'
    assert quoted not in agent_text(json.dumps({"error": json.dumps(quoted)}).encode(), (quoted,))
    assert "\n" not in agent_text(b'{"error": "line1\\nFAKE: line2"}')


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/tools/status", "/tools/status"),
        ("/status", "/status"),
        ("/tools", "/tools"),
        ("/health", "/health"),
        ("/tools/my-server/start", "/tools/{name}/start"),
        ("/tools/x.y_z/stop", "/tools/{name}/stop"),
        ("/tools/fetch", "/tools/{name}"),
        ("/tools/a/b/c", "other"),
        ("/anything/else", "other"),
    ],
)
def test_a_metrics_route_is_a_template_never_a_name(path: str, route: str) -> None:
    from reconciler.adapters.dtma_protocol import route_of, status_class

    assert route_of(path) == route
    assert (status_class(201), status_class(404), status_class(503), status_class(42)) == (
        "2xx",
        "4xx",
        "5xx",
        "other",
    )
