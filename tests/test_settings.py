"""Settings read from the environment, and how the composition root hands them to the planner and executor."""

from __future__ import annotations

import pytest

from reconciler.app.tuning import executor_config_for, policy_for
from reconciler.core.plan import Policy
from reconciler.errors import ConfigError
from reconciler.runtime.execute import ExecutorConfig
from reconciler.settings import from_environ


def test_the_hold_and_the_deploy_watch_have_defaults_and_settings() -> None:
    default = from_environ({})
    assert (default.blocked_retry_after, default.deploy_watch_timeout) == (600.0, 120.0)
    tuned = from_environ({"RECONCILER_BLOCKED_RETRY_AFTER": "30", "RECONCILER_DEPLOY_WATCH_TIMEOUT": "2.5"})
    assert (tuned.blocked_retry_after, tuned.deploy_watch_timeout) == (30.0, 2.5)
    with pytest.raises(ConfigError, match="RECONCILER_DEPLOY_WATCH_TIMEOUT='0' must be greater than 0"):
        from_environ({"RECONCILER_DEPLOY_WATCH_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match="RECONCILER_BLOCKED_RETRY_AFTER='soon' is not a number"):
        from_environ({"RECONCILER_BLOCKED_RETRY_AFTER": "soon"})


def test_the_composition_root_passes_them_through_and_keeps_the_callers_flags() -> None:
    settings = from_environ({"RECONCILER_BLOCKED_RETRY_AFTER": "30", "RECONCILER_DEPLOY_WATCH_TIMEOUT": "7"})
    policy = policy_for(settings, Policy(allow_mass_delete="migration"))
    assert (policy.blocked_retry_after, policy.allow_mass_delete) == (30.0, "migration")
    assert policy_for(settings).blocked_retry_after == 30.0
    assert executor_config_for(settings).pending_timeout == 7.0
    own = ExecutorConfig(pending_timeout=0.5)
    assert executor_config_for(settings, own) is own  # a test's or embedder's own config is kept as given


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "NaN"])
def test_a_timeout_that_is_not_finite_is_refused(raw: str) -> None:
    # nan passed the "greater than 0" check: a readiness deadline of nan is never reached
    for name in ("RECONCILER_PROBE_TIMEOUT", "RECONCILER_READINESS_TIMEOUT"):
        with pytest.raises(ConfigError, match=f"{name}='{raw}' must be (a finite number|greater than 0)"):
            from_environ({name: raw})
