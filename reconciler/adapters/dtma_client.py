"""The DTMA client: implements ``reconciler.ports.Dtma`` over one call path.

Every call, single or one of many listings, goes through ``DtmaClient._call``: the request and the meaning
of the answer come from the pure ``dtma_protocol``, the bytes travel on the one asyncio transport
(``dtma_http``), ``map_transport_error`` is the one place that turns transport failures into the project's
errors, and one retry loop tries idempotent calls again (exponential backoff, full jitter, within the call's
overall deadline). The synchronous methods hand the same coroutine to the transport's loop thread.
``POST /tools`` is sent at most once: it has its own long timeout, and no answer in time is a
``DtmaDeployTimeoutError`` (the agent may still be pulling the image). The bearer token is put on each
request only, and never appears in a message this module builds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from reconciler.adapters.dtma_http import (
    CONNECT_KINDS,
    AioBodyTooLarge,
    AioError,
    AioTimeout,
    AioTransportError,
    Endpoint,
    HttpTransport,
    endpoint,
)
from reconciler.adapters.dtma_listing import parse_listing
from reconciler.adapters.dtma_protocol import (
    STATUS,
    TOOLS_STATUS,
    USER_AGENT,
    Call,
    RetryPolicy,
    bearer,
    classify,
    deploy_call,
    deploy_result,
    is_missing_route,
    next_delay,
    route_of,
    status_class,
)
from reconciler.collector import collector_paused
from reconciler.core.observed import LiveListing
from reconciler.errors import (
    DtmaDeployTimeoutError,
    DtmaError,
    DtmaNotFoundError,
    DtmaResponseError,
    DtmaTransportError,
)
from reconciler.ports import DeployRequest, DeployResult, DtmaTarget

__all__ = [
    "DtmaClient",
    "DtmaForgottenError",
    "RequestObserver",
    "RetryPolicy",
    "is_forgotten",
    "map_transport_error",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
ROUTE_MEMORY_S = 600.0  # how long an agent without /tools/status is listed on /status without asking again
_MAX_ENDPOINTS = 100_000
_PENDING = DtmaTransportError("listing not run")  # a placeholder every result slot replaces

_TOOLS_STATUS_CALL = Call("GET", TOOLS_STATUS, missing_route_ok=True)
_STATUS_CALL = Call("GET", STATUS)

Sleep = Callable[[float], Awaitable[None] | None]  # a plain function (a test's no-op) may stand in
TRANSPORT_ERROR = "transport-error"  # the status class of a request that got no answer


class RequestObserver(Protocol):
    """Told of every request sent (each retry too), on the client's loop thread: its method, route template
    (``route_of``: never a server's name), status class (``2xx``...``5xx``, or ``transport-error`` when no
    answer came) and the seconds it took. The composition root connects it to the metrics; it must be quick
    and must not raise."""

    def __call__(self, method: str, route: str, status_class: str, seconds: float) -> None: ...


class DtmaForgottenError(DtmaNotFoundError):
    """404 for a name the last listing of that toolbox showed: the agent restarted and forgot it."""

    forgotten = True


def is_forgotten(listing: LiveListing | None, name: str, error: BaseException) -> bool:
    """True when ``error`` is a 404 for ``name`` although ``listing`` shows that container."""
    if not isinstance(error, DtmaNotFoundError) or listing is None:
        return False
    return any(c.name == name and c.state != "not_found" for c in listing.containers)


TRANSPORT_FAILURES = (TimeoutError, AioTimeout, AioTransportError, AioBodyTooLarge)


def map_transport_error(
    exc: BaseException, call: Call, where: str, *, deadline: float, max_body: int
) -> DtmaError:
    """The project's error for what the transport (or the call's deadline: ``TimeoutError``) raised, the one
    place where that is decided. A deploy that was sent and got no answer is ``DtmaDeployTimeoutError``: it
    may still happen, so it is never re-sent."""

    def unanswered(what: str) -> DtmaError:
        if call.deploy:
            return DtmaDeployTimeoutError(
                f"{where}: {what}; the agent may still be pulling the image and deploying: not re-sent, "
                "poll the listing (RECONCILER_DTMA_DEPLOY_TIMEOUT sets how long a deploy may take)"
            )
        return DtmaTransportError(f"{where}: {what}")

    if isinstance(exc, AioBodyTooLarge):
        return DtmaResponseError(f"{where}: response body larger than {max_body} bytes, refused")
    if isinstance(exc, AioError):
        failure = "timed out" if isinstance(exc, AioTimeout) else "transport failure"
        if "CERTIFICATE_VERIFY_FAILED" in exc.detail:
            return DtmaTransportError(
                f"{where}: the agent's TLS certificate is not trusted "
                "(set RECONCILER_DTMA_CA_BUNDLE to the CA that signed it)",
                retryable=False,
            )
        if exc.kind in CONNECT_KINDS:  # nothing was sent: safe to try again, even a deploy
            return DtmaTransportError(f"{where}: {failure} ({exc.kind})")
        return unanswered(f"{failure} ({exc.kind})")
    setting = "RECONCILER_DTMA_DEPLOY_TIMEOUT" if call.deploy else "RECONCILER_DTMA_CALL_DEADLINE"
    return unanswered(f"no complete answer within the {deadline:g} s deadline ({setting})")


class DtmaClient:
    """A client for many toolboxes over one transport (see ``dtma_http``). ``sleep`` (awaited between
    retries) and ``rng`` (the jitter) are injectable; nothing else changes with them."""

    def __init__(
        self,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        call_deadline: float = 60.0,
        deploy_timeout: float = 600.0,
        concurrency: int = 64,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        verify: bool | str = True,
        max_body_bytes: int = MAX_BODY_BYTES,
        on_request: RequestObserver | None = None,
    ) -> None:
        self._read_timeout = read_timeout
        self._deadline = call_deadline
        self._deploy_timeout = deploy_timeout
        self._concurrency = max(1, concurrency)
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None  # built on the first https request (loading the CA bundle)
        self._http = HttpTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            concurrency=self._concurrency,
            ssl_context=self._context,
            max_idle=self._concurrency,
        )
        self._retry = retry or RetryPolicy()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._max_body = max_body_bytes
        self._on_request = on_request
        self._last_listing: dict[str, LiveListing] = {}
        self._status_only: dict[str, float] = {}  # base URL -> loop time until which /status is used
        # GET request bytes per (base URL, path, token), built once: they carry the token, so never shown.
        self._endpoints: dict[tuple[str, str, str], Endpoint] = {}

    def __repr__(self) -> str:
        return (
            f"DtmaClient(concurrency={self._concurrency}, read_timeout={self._read_timeout:g}, "
            f"deadline={self._deadline:g}, deploy_timeout={self._deploy_timeout:g})"
        )

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            verify = self._verify
            if isinstance(verify, str):
                self._ssl = ssl.create_default_context(cafile=verify)
            else:
                self._ssl = ssl.create_default_context()
                if not verify:
                    self._ssl.check_hostname = False
                    self._ssl.verify_mode = ssl.CERT_NONE
        return self._ssl

    # -- the one call path ------------------------------------------------------------------------------

    def _endpoint(self, target: DtmaTarget, call: Call) -> Endpoint:
        cacheable = call.body is None and call.method == "GET"
        key = (target.base_url, call.path, target.token.reveal() if call.auth else "")
        ep = self._endpoints.get(key) if cacheable else None
        if ep is not None:
            return ep  # its token was checked when it was built
        headers = [("Accept", "application/json")]
        if call.auth:
            headers.append(("Authorization", bearer(target.token, call.where(target.label))))
        headers.append(("User-Agent", USER_AGENT))
        if not cacheable:
            return endpoint(target.base_url, call.path, headers, method=call.method, body=call.body)
        if len(self._endpoints) >= _MAX_ENDPOINTS:
            self._endpoints.clear()
        ep = self._endpoints[key] = endpoint(target.base_url, call.path, headers)
        return ep

    async def _call(self, target: DtmaTarget, call: Call) -> tuple[int, bytes]:
        """Send ``call`` (again, while the protocol says so) and return the status and body of an answer
        that means success (or a missing route, where the call allows it). The message prefix (``where``)
        is made only for a message: a listing that succeeds needs none."""
        deadline = self._deploy_timeout if call.deploy else self._deadline
        try:
            ep = self._endpoint(target, call)  # a URL no request can be made of fails here
        except TRANSPORT_FAILURES as exc:
            where = call.where(target.label)
            raise map_transport_error(exc, call, where, deadline=deadline, max_body=self._max_body) from exc
        read_timeout = self._deploy_timeout if call.deploy else self._read_timeout
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline
        attempt = 0
        while True:
            try:
                sent = loop.time()
                try:
                    async with asyncio.timeout_at(ends):
                        resp = await self._http.request(
                            ep, self._max_body, read_timeout=read_timeout, reuse=call.idempotent
                        )
                except TRANSPORT_FAILURES as exc:
                    self._observe(call, TRANSPORT_ERROR, loop.time() - sent)
                    raise map_transport_error(
                        exc, call, call.where(target.label), deadline=deadline, max_body=self._max_body
                    ) from exc
                status = resp.status
                self._observe(call, status, loop.time() - sent)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("DTMA %s -> %s", call.where(target.label), status)
                if call.missing_route_ok and is_missing_route(status, resp.body):
                    return status, resp.body
                # A 2xx is success: classify's own first test, made here before a message prefix is built.
                error = (
                    None if 200 <= status < 300 else classify(call, status, resp.body, call.where(target.label))
                )
                if error is None:
                    return status, resp.body
                raise error
            except DtmaError as exc:
                delay = next_delay(self._retry, call, attempt, exc, rng=self._rng, remaining=ends - loop.time())
                if delay is None:
                    raise
                log.info("DTMA %s failed (%s), retry %d in %.2fs", call.where(target.label),
                         exc.status_code or "transport", attempt + 1, delay)  # fmt: skip
                pause = self._sleep(delay)
                if pause is not None:
                    await pause
                attempt += 1

    def _observe(self, call: Call, status: int | str, seconds: float) -> None:
        """Tell the request observer, if any (``status``: the HTTP status, or ``TRANSPORT_ERROR``)."""
        if self._on_request is None:
            return
        label = status if isinstance(status, str) else status_class(status)
        try:
            self._on_request(call.method, route_of(call.path), label, seconds)
        except Exception:  # a metrics failure must never fail the call it measures
            log.exception("the DTMA request observer failed")

    def _run(self, target: DtmaTarget, call: Call) -> tuple[int, bytes]:
        return self._http.run(self._call(target, call))

    @staticmethod
    def _json(where: str, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            raise DtmaResponseError(f"{where}: body is not JSON") from None

    # -- listings ---------------------------------------------------------------------------------------

    async def _list(self, target: DtmaTarget) -> LiveListing:
        """``GET /tools/status`` (authenticated, managed containers with their ids); ``GET /status`` only
        where the agent has no such route, remembered for a while so those agents cost one call."""
        loop = asyncio.get_running_loop()
        path = TOOLS_STATUS
        if self._status_only.get(target.base_url, 0.0) > loop.time():
            path = STATUS
        else:
            status, data = await self._call(target, _TOOLS_STATUS_CALL)
            if is_missing_route(status, data):
                self._status_only[target.base_url] = loop.time() + ROUTE_MEMORY_S
                path = STATUS
        if path == STATUS:
            status, data = await self._call(target, _STATUS_CALL)
        try:
            body = json.loads(data)
        except ValueError:
            raise DtmaResponseError(f"GET {path} on {target.label}: body is not JSON") from None
        listing = parse_listing(target.environment_id, body)
        self._last_listing[target.environment_id] = listing
        return listing

    def list(self, target: DtmaTarget) -> LiveListing:
        return self._http.run(self._list(target))

    def list_many(self, targets: Sequence[DtmaTarget]) -> Mapping[str, LiveListing | Exception]:
        """Every listing on the transport's loop, at most ``concurrency`` at a time; a failure is returned."""
        if not targets:
            return {}
        with collector_paused():  # the listings are kept, their JSON freed by reference counting
            results = self._http.run(self._list_all(targets))
        return {t.environment_id: r for t, r in zip(targets, results, strict=True)}

    async def _list_all(self, targets: Sequence[DtmaTarget]) -> Sequence[LiveListing | Exception]:
        """``concurrency`` workers take the targets in turn (one task and one semaphore slot per worker,
        not per target: at 1,000 toolboxes the per-target tasks were a visible share of the CPU). The
        semaphore is the client's, so concurrent ``list_many`` calls still share one bound."""
        sem = self._http.semaphore()
        results: list[LiveListing | Exception] = []
        results.extend(_PENDING for _ in targets)
        todo = iter(enumerate(targets))

        async def worker() -> None:
            async with sem:
                for i, t in todo:
                    try:
                        results[i] = await self._list(t)
                    except DtmaError as exc:
                        results[i] = exc

        await asyncio.gather(*(worker() for _ in range(min(self._concurrency, len(targets)))))
        return results

    # -- writes -----------------------------------------------------------------------------------------

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult:
        call = deploy_call(request)
        _, data = self._run(target, call)
        return deploy_result(self._json(call.where(target.label), data))

    def _named(self, target: DtmaTarget, method: str, path: str, name: str) -> None:
        try:
            self._run(target, Call(method, path))
        except DtmaNotFoundError as exc:
            if is_forgotten(self._last_listing.get(target.environment_id), name, exc):
                raise DtmaForgottenError(
                    f"{exc.message} (the last listing shows '{name}': the agent restarted and forgot "
                    "the names it manages)",
                    status_code=404,
                ) from None
            raise

    def start(self, target: DtmaTarget, name: str) -> None:
        self._named(target, "POST", f"/tools/{name}/start", name)

    def stop(self, target: DtmaTarget, name: str) -> None:
        """Raises ``DtmaAlreadyStoppedError`` when the container was not running (the stop's aim holds)."""
        self._named(target, "POST", f"/tools/{name}/stop", name)

    def delete(self, target: DtmaTarget, name: str) -> None:
        self._named(target, "DELETE", f"/tools/{name}", name)

    def health(self, target: DtmaTarget) -> bool:
        try:
            status, _ = self._run(target, Call("GET", "/health", auth=False))
        except DtmaError:
            return False
        return status == 200

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DtmaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
