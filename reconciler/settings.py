"""Typed settings: flags, then environment variables, then defaults. The environment is read only here."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from reconciler.errors import ConfigError
from reconciler.model.secrets import Secret

DEFAULT_DATABASE_URL = "sqlite:///.reconciler/state.db"
DEFAULT_JOURNAL_PATH = ".reconciler/journal.db"
DEFAULT_DTMA_PORT = 30000
# Which token the agents are called with. Agentopia's backend calls every agent with
# BACKEND_TO_DTMA_API_KEY; the environment row's dtma_bearer_token is the agent's token toward the backend
# (heartbeats), which the older agent does not accept. "row" is an explicit opt-in for deployments whose
# agents take their row's token (falling back to the key where a row has none).
TOKEN_SOURCES = ("backend-key", "row")


def mask_url(url: str) -> str:
    """The URL with any password replaced, for logs and errors."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    journal_path: str = DEFAULT_JOURNAL_PATH
    dtma_port: int = DEFAULT_DTMA_PORT
    dtma_token: Secret | None = field(default=None, repr=False)
    dtma_token_source: str = "backend-key"  # one of TOKEN_SOURCES
    dtma_scheme: str = "http"
    dtma_ca_bundle: str | None = None  # PEM file of the CA that signed the agents' certificates
    dtma_connect_timeout: float = 3.0
    dtma_read_timeout: float = 30.0
    dtma_call_deadline: float = 60.0  # overall limit of one call, retries included (a trickling agent)
    dtma_deploy_timeout: float = 600.0  # POST /tools answers only after pulling the image
    dtma_concurrency: int = 64
    apply_concurrency: int = 16
    # Creates sent to one agent at once: its Docker pulls 3 layers at a time by default, so more only queue
    # inside the agent against the deploy deadline (README, "Deploys in parallel on one toolbox").
    dtma_deploy_concurrency: int = 3
    secret_key: Secret | None = field(default=None, repr=False)  # HMAC key for secret fingerprints
    journal_max_age_days: float = 90.0
    journal_keep_runs: int = 10_000
    # How long the planner holds back a create whose name the agent holds (or whose agent forgot its
    # containers) before it tries once more: an agent restart releases the name, a retry every cycle does not.
    blocked_retry_after: float = 600.0
    # How long the executor watches the listing for a deploy whose answer timed out before it ends ``pending``.
    deploy_watch_timeout: float = 120.0
    # Readiness probes (README, "Readiness and health"): how many run at once per cycle, how long one may
    # take, how long a server has after a create, replace or start to pass, and how many failed cycles in a
    # row make it unhealthy. The manifest's readiness.timeout and failureThreshold override the last two.
    probe_concurrency: int = 32
    probe_timeout: float = 5.0
    readiness_timeout: float = 30.0
    unhealthy_after: int = 3
    # Off: no probe at all (a CI runner that reaches the agents' port but not the servers' host ports).
    readiness: bool = True

    # Rollouts (core/rollout.py): a replace of one server across toolboxes goes out in waves and halts on the
    # first step that does not end ok. Off: every step at once (apply --no-rollout, RECONCILER_ROLLOUT=off).
    rollout: bool = True
    rollout_first_wave: int = 1
    rollout_max_in_flight: int = 10
    # The git webhook's secret (POST /hooks/git); without it the route refuses every request.
    webhook_secret: Secret | None = field(default=None, repr=False)
    # Where notifications go (RECONCILER_NOTIFY, beside --notify): a Slack webhook URL is itself a secret.
    notify_urls: tuple[Secret, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return (
            f"Settings(database_url={mask_url(self.database_url)!r}, journal_path={self.journal_path!r}, "
            f"dtma_port={self.dtma_port}, dtma_token={'***' if self.dtma_token else None})"
        )

    @property
    def dtma_verify(self) -> bool | str:
        """What the HTTP client checks agents' certificates against: the CA bundle, else the system CAs."""
        return self.dtma_ca_bundle or True

    def with_overrides(self, **kwargs: object) -> Settings:
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})  # type: ignore[arg-type]


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    token_setting = "BACKEND_TO_DTMA_API_KEY" if env.get("BACKEND_TO_DTMA_API_KEY") else "DTMA_BEARER_TOKEN"
    token = env.get(token_setting)
    if token and not _latin1(token):
        raise ConfigError(
            f"{token_setting} holds characters outside Latin-1, which no HTTP header can carry; "
            "use the token the agents were given"
        )
    key = env.get("RECONCILER_SECRET_KEY")
    ca_bundle = env.get("RECONCILER_DTMA_CA_BUNDLE") or None
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ConfigError(f"RECONCILER_DTMA_CA_BUNDLE={ca_bundle!r} is not a readable file")
    scheme = env.get("RECONCILER_DTMA_SCHEME") or ("https" if ca_bundle else "http")
    if scheme not in ("http", "https"):
        raise ConfigError(f"RECONCILER_DTMA_SCHEME={scheme!r} must be http or https")
    token_source = env.get("RECONCILER_DTMA_TOKEN_SOURCE") or "backend-key"
    if token_source not in TOKEN_SOURCES:
        raise ConfigError(f"RECONCILER_DTMA_TOKEN_SOURCE={token_source!r} must be {' or '.join(TOKEN_SOURCES)}")
    return Settings(
        database_url=env.get("RECONCILER_DATABASE_URL", DEFAULT_DATABASE_URL),
        journal_path=env.get("RECONCILER_JOURNAL", DEFAULT_JOURNAL_PATH),
        dtma_port=_number(env, "DTMA_PORT", DEFAULT_DTMA_PORT, int),
        dtma_token=Secret(token) if token else None,
        dtma_token_source=token_source,
        dtma_scheme=scheme,
        dtma_ca_bundle=ca_bundle,
        dtma_connect_timeout=_number(env, "RECONCILER_DTMA_CONNECT_TIMEOUT", 3.0, float),
        dtma_read_timeout=_number(env, "RECONCILER_DTMA_READ_TIMEOUT", 30.0, float),
        dtma_call_deadline=_number(env, "RECONCILER_DTMA_CALL_DEADLINE", 60.0, float),
        dtma_deploy_timeout=_number(env, "RECONCILER_DTMA_DEPLOY_TIMEOUT", 600.0, float),
        dtma_concurrency=_number(env, "RECONCILER_DTMA_CONCURRENCY", 64, int),
        apply_concurrency=_number(env, "RECONCILER_APPLY_CONCURRENCY", 16, int),
        dtma_deploy_concurrency=_number(env, "RECONCILER_DTMA_DEPLOY_CONCURRENCY", 3, int),
        secret_key=Secret(key) if key else None,
        journal_max_age_days=_number(env, "RECONCILER_JOURNAL_MAX_AGE_DAYS", 90.0, float),
        journal_keep_runs=_number(env, "RECONCILER_JOURNAL_KEEP_RUNS", 10_000, int),
        blocked_retry_after=_number(env, "RECONCILER_BLOCKED_RETRY_AFTER", 600.0, float),
        deploy_watch_timeout=_number(env, "RECONCILER_DEPLOY_WATCH_TIMEOUT", 120.0, float),
        probe_concurrency=_number(env, "RECONCILER_PROBE_CONCURRENCY", 32, int),
        probe_timeout=_number(env, "RECONCILER_PROBE_TIMEOUT", 5.0, float),
        readiness_timeout=_number(env, "RECONCILER_READINESS_TIMEOUT", 30.0, float),
        unhealthy_after=_number(env, "RECONCILER_UNHEALTHY_AFTER", 3, int),
        readiness=_switch(env, "RECONCILER_READINESS", True),
        rollout=_switch(env, "RECONCILER_ROLLOUT", True),
        rollout_first_wave=_number(env, "RECONCILER_ROLLOUT_FIRST_WAVE", 1, int),
        rollout_max_in_flight=_number(env, "RECONCILER_ROLLOUT_MAX_IN_FLIGHT", 10, int),
        webhook_secret=Secret(env["RECONCILER_WEBHOOK_SECRET"]) if env.get("RECONCILER_WEBHOOK_SECRET") else None,
        notify_urls=tuple(Secret(u) for u in re.split(r"[\s,]+", env.get("RECONCILER_NOTIFY", "")) if u),
    )


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name}={env.get(name)!r} must be on or off")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if not math.isfinite(value):  # nan passes every comparison; inf would be a deadline never reached
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value
