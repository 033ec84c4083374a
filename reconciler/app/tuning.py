"""Settings -> the planner's policy and the executor's config: the holds and deadlines an operator may tune."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.plan import Policy
from reconciler.runtime.step_results import ExecutorConfig
from reconciler.settings import Settings


def policy_for(settings: Settings, policy: Policy | None = None) -> Policy:
    """The caller's policy (flags such as ``--allow-mass-delete``) with the held-name hold from the settings."""
    return replace(policy or Policy(), blocked_retry_after=settings.blocked_retry_after)


def executor_config_for(settings: Settings, config: ExecutorConfig | None = None) -> ExecutorConfig:
    """A caller's own config (tests, embedders) as given; else the defaults with the settings' deploy watch."""
    if config is not None:
        return config
    return ExecutorConfig(pending_timeout=settings.deploy_watch_timeout)
