"""The DTMA protocol without I/O: what to send, what an answer means, whether to try again.

Pure functions over bytes and numbers, shared by every call the client makes (``dtma_client`` drives them
over ``dtma_http``). Answers are classified by their meaning, not only their status code, because the real
agents put Docker's own status inside a 500 (``"(HTTP code 304) container already stopped"``) and give 409
three meanings. Every text taken from an answer is redacted of the call's secrets and bounded in length
before it enters a message.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.redact import redact
from reconciler.errors import (
    DtmaAlreadyStoppedError,
    DtmaAuthError,
    DtmaClientError,
    DtmaConflictError,
    DtmaError,
    DtmaNameHeldError,
    DtmaNameTakenError,
    DtmaNoSuchContainerError,
    DtmaNotFoundError,
    DtmaPortConflictError,
    DtmaServerError,
    DtmaTokenError,
)
from reconciler.model.secrets import Secret
from reconciler.ports import DeployRequest, DeployResult

ANSWER_TEXT_LIMIT = 300  # characters of an agent's text kept in a message
USER_AGENT = "mcp-reconciler"
TOOLS_STATUS = "/tools/status"  # authenticated, managed containers with their instance ids
STATUS = "/status"  # the older agent's listing (public on the newer agent, which has /tools/status)
_TOKEN_HINT = "BACKEND_TO_DTMA_API_KEY (or the environment's dtma_bearer_token where opted in)"
_DOCKER_CODE = re.compile(r"\(HTTP code (\d{3})\)")
_FIXED_ROUTES = frozenset({"/tools", TOOLS_STATUS, STATUS, "/health"})
_NAMED_ROUTE = re.compile(r"/tools/[^/?]+(/(?:start|stop|restart|logs))?")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # total tries of an idempotent call
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


@dataclass(frozen=True)
class Call:
    """One request to an agent, as data."""

    method: str
    path: str
    body: bytes | None = field(default=None, repr=False)  # a deploy body carries secret values
    auth: bool = True
    idempotent: bool = True
    deploy: bool = False  # the long deploy timeout; no answer means "may still happen", never re-sent
    secrets: tuple[str, ...] = field(default=(), repr=False)  # redacted from any text of the answer
    missing_route_ok: bool = False  # a 404 "no such route" is returned to the caller, not raised

    def where(self, toolbox: str) -> str:
        return f"{self.method} {self.path} on {toolbox}"


def route_of(path: str) -> str:
    """The route template of a request path, for metrics: a server's name becomes ``{name}``
    (``/tools/fetch/start`` -> ``/tools/{name}/start``) and an unknown path is ``other``, so the label
    values are a short fixed list whatever the names are."""
    if path in _FIXED_ROUTES:
        return path
    m = _NAMED_ROUTE.fullmatch(path)
    if m is None:
        return "other"
    return "/tools/{name}" + (m.group(1) or "")


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ... of an HTTP status code."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def bearer(token: Secret, where: str) -> str:
    """The Authorization header value for ``token``; refuses one no HTTP header can carry, before sending."""
    text = token.reveal().strip()
    if not text or any(ch in text for ch in "\r\n"):
        raise DtmaAuthError(f"{where}: no usable bearer token; set {_TOKEN_HINT}")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise DtmaTokenError(
            f"{where}: the bearer token holds characters outside Latin-1, which no HTTP header can carry; "
            f"check {_TOKEN_HINT}"
        ) from None
    return "Bearer " + text


def bounded(text: str, limit: int = ANSWER_TEXT_LIMIT) -> str:
    """At most ``limit`` characters, control characters shown escaped (an agent's text cannot forge lines)."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def agent_text(body: bytes, secrets: Sequence[str] = ()) -> str:
    """The agent's own words in an answer (``message: error`` of a JSON body, else the raw text), redacted
    of ``secrets`` first and then bounded, so no cut leaves part of a secret."""
    raw = body.decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        parts = [str(data[k]) for k in ("message", "error") if isinstance(data.get(k), str)]
        raw = ": ".join(parts)
    elif data is not None:
        raw = ""
    return bounded(redact(raw.strip(), secrets))


def is_missing_route(status: int, body: bytes) -> bool:
    """A 404 for a route the agent does not have (Express: ``{"error":"Not Found"}`` or ``Cannot GET``),
    as opposed to a 404 about a tool instance."""
    if status != 404:
        return False
    text = body.decode("utf-8", "replace")
    if "Cannot " in text:
        return True
    try:
        data = json.loads(text)
    except ValueError:
        return not text.strip()
    return isinstance(data, Mapping) and data.get("error") == "Not Found" and "success" not in data


def classify(call: Call, status: int, body: bytes, where: str) -> DtmaError | None:
    """What an answer means: None for success, else the error of the project's tree that says why."""
    if 200 <= status < 300:
        return None  # the common case, decided without reading the body as JSON (listings are large)
    action = call.path.rsplit("/", 1)[-1] if call.path.startswith("/tools/") else ""
    text = agent_text(body, call.secrets)
    said = f"{where}: {status}" + (f": {text}" if text else "")
    lower = text.lower()
    docker = _DOCKER_CODE.search(text)
    docker_code = int(docker.group(1)) if docker else None
    if status == 304 or (status >= 500 and docker_code == 304):
        if action == "start":
            return None  # already running: what a start wants
        return DtmaAlreadyStoppedError(f"{said} (the container is not running)", status_code=status)
    if status < 400:
        return None
    if status == 401:
        return DtmaAuthError(f"{where}: 401, the bearer token is missing or malformed; check {_TOKEN_HINT}",
                             status_code=401)  # fmt: skip
    if status == 403:
        return DtmaAuthError(f"{where}: 403, the bearer token is wrong for this toolbox; check {_TOKEN_HINT}",
                             status_code=403)  # fmt: skip
    if (status == 404 and "no such container" in lower) or (docker_code == 404 and "no such container" in lower):
        return DtmaNoSuchContainerError(
            f"{said} (the agent still holds the name but the container is gone)", status_code=status
        )
    if status == 404:
        return DtmaNotFoundError(said, status_code=404)
    if status == 409:
        if "port conflict" in lower:
            return DtmaPortConflictError(said, status_code=409)
        if "already exists" in lower:
            return DtmaNameHeldError(
                f"{said} (the agent remembers this name even without a container; only restarting the "
                "agent on this toolbox clears it)",
                status_code=409,
            )
        return DtmaConflictError(said, status_code=409)
    if docker_code == 409 or "is already in use" in lower:
        return DtmaNameTakenError(
            f"{said} (a container of that name exists that the agent does not manage: made by hand, or the "
            "agent forgot its containers when it restarted)",
            status_code=status,
        )
    if status >= 500:
        # Docker's client errors inside a 500 (a pull refused, a bad name) do not change on a retry.
        retryable = None if docker_code is None or docker_code >= 500 else False
        return DtmaServerError(said, status_code=status, retryable=retryable)
    return DtmaClientError(said, status_code=status)


def next_delay(
    policy: RetryPolicy, call: Call, attempt: int, error: DtmaError, *, rng: random.Random, remaining: float
) -> float | None:
    """Seconds to wait before trying ``call`` again after ``error`` on try ``attempt`` (0-based), or None
    when it must not be tried again: not idempotent, not retryable, out of tries or out of time."""
    if not call.idempotent or not error.retryable or attempt + 1 >= policy.attempts:
        return None
    delay = policy.delay(attempt, rng)
    return delay if delay < remaining else None


def deploy_call(request: DeployRequest) -> Call:
    """``POST /tools`` for ``request``: the agent reads only ``Env`` and ``HostConfig.PortBindings``."""
    override: dict[str, Any] = {"Env": [f"{k}={v if isinstance(v, str) else v.reveal()}" for k, v in request.env]}
    if request.port is not None:
        binding = {} if request.host_port is None else {"HostPort": str(request.host_port)}
        if request.host_port is not None and request.host_ip is not None:
            binding["HostIp"] = request.host_ip
        override["HostConfig"] = {"PortBindings": {f"{request.port}/tcp": [binding]}}
    body = {
        "dockerImageUrl": request.image,
        "instanceNameOnToolbox": request.name,
        "accountToolInstanceId": request.instance_id,
        "baseConfigOverrideJson": override,
    }
    secrets = tuple(v.reveal() for _, v in request.env if not isinstance(v, str))
    return Call("POST", "/tools", body=json.dumps(body).encode(), idempotent=False, deploy=True, secrets=secrets)


def deploy_result(answer: Any) -> DeployResult:
    """The container id and state of a 201 answer (either may be missing)."""
    info = answer.get("data") if isinstance(answer, Mapping) else None
    if not isinstance(info, Mapping):
        return DeployResult(container_id=None, state=None)
    state = info.get("state")
    state_text = state.get("Status") if isinstance(state, Mapping) else state
    cid = info.get("container_id")
    return DeployResult(
        container_id=None if cid is None else str(cid),
        state=None if state_text is None else str(state_text),
    )
