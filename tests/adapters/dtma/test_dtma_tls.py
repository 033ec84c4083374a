"""HTTPS to the agents: the simulator serves TLS, the client trusts a CA bundle from the settings."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.core.observed import RecordedEnvironment
from reconciler.errors import ConfigError, DtmaError
from reconciler.model.secrets import Secret
from reconciler.ports import DtmaTarget
from reconciler.runtime.observe import target_for
from reconciler.settings import from_environ
from reconciler.simulator import Simulator

TLS = Path(__file__).parents[2] / "fixtures" / "tls"
TOKEN = "tls-test-token-8d7c6b5a"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(
        toolboxes=1, token=TOKEN, tls_cert=str(TLS / "server.pem"), tls_key=str(TLS / "server.key")
    ) as s:
        yield s


def _target(sim: Simulator) -> DtmaTarget:
    return DtmaTarget("env-0", sim.base_url(0), Secret(TOKEN))


def test_the_client_lists_over_https_when_it_trusts_the_ca(sim: Simulator) -> None:
    assert sim.base_url(0).startswith("https://127.0.0.1:")
    client = DtmaClient(verify=str(TLS / "ca.pem"))
    try:
        assert client.list(_target(sim)).containers == ()
    finally:
        client.close()


def test_an_untrusted_certificate_is_an_error_that_names_the_cause_not_the_token(sim: Simulator) -> None:
    client = DtmaClient(verify=True, retry=RetryPolicy(attempts=1), rng=random.Random(1))
    try:
        with pytest.raises(DtmaError) as caught:
            client.list(_target(sim))
    finally:
        client.close()
    assert "certificate" in str(caught.value).lower()
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)


def test_a_ca_bundle_in_the_environment_switches_the_agents_to_https() -> None:
    settings = from_environ({"RECONCILER_DTMA_CA_BUNDLE": str(TLS / "ca.pem"), "BACKEND_TO_DTMA_API_KEY": "t"})
    assert settings.dtma_verify == str(TLS / "ca.pem")
    env = RecordedEnvironment(id="e1", name="tb", address="10.0.0.5", status="active")
    target = target_for(env, settings)
    assert isinstance(target, DtmaTarget) and target.base_url == "https://10.0.0.5:30000"
    assert target_for(env, from_environ({"BACKEND_TO_DTMA_API_KEY": "t"})).base_url == "http://10.0.0.5:30000"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RECONCILER_DTMA_CA_BUNDLE": "/nonexistent/ca.pem"}, "RECONCILER_DTMA_CA_BUNDLE='/nonexistent/ca.pem'"),
        ({"RECONCILER_DTMA_SCHEME": "ftp"}, "must be http or https"),
    ],
)
def test_bad_tls_settings_are_refused_by_name(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_environ(environ)
