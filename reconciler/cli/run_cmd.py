"""``reconciler run``: the daemon. Parses, builds a DaemonConfig, and hands over to runtime.daemon."""

from __future__ import annotations

import argparse
import logging
import re
from typing import TYPE_CHECKING, Any

from reconciler.cli.plan_cmd import add_adopt, add_common, settings_from
from reconciler.errors import ConfigError

if TYPE_CHECKING:
    from reconciler.runtime.execute import StepResult

log = logging.getLogger("reconciler.run")

EXAMPLE = """example:
  reconciler run manifests/ --interval 30s --listen 127.0.0.1:9464
  reconciler run manifests/ --once
  reconciler run manifests/ --git-pull --interval 5m --jitter 10%
  reconciler run manifests/ --listen 127.0.0.1:9464 --notify slack+https://hooks.slack.com/services/T/B/X
  kill -HUP $(cat .reconciler/daemon.pid)     # or: reconciler reconcile-now

exit codes: 0 after SIGTERM/SIGINT and a clean stop (with --once: 0 if the cycle was clean);
1 on a configuration error, a second daemon on one SQLite file, or (--once) a failed cycle;
128+N when a second signal N cut the running step short

environment (besides those in the README's configuration table):
  RECONCILER_BLOCKED_RETRY_AFTER   seconds a create whose name the agent holds is held back before it is
                                   tried once more (default 600); restarting the agent releases the name
  RECONCILER_DEPLOY_WATCH_TIMEOUT  seconds the listing is watched for a deploy whose answer timed out
                                   before the step ends pending (default 120); it is never re-sent
  RECONCILER_WEBHOOK_SECRET        the git webhook's secret (POST /hooks/git on --listen); unset, the
                                   route refuses every request (403)
  RECONCILER_NOTIFY                notification URLs (space or comma separated), beside --notify

signals: SIGHUP runs a cycle now (with a git pull under --git-pull), as `reconciler reconcile-now` and a
signed POST /hooks/git do; triggers while a cycle runs make exactly one more cycle
"""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``1.5m`` or a bare number of seconds (``90``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ConfigError(f"{text!r} is not a duration (try 30s, 5m, 1h or 90)")
    value = float(m.group(1)) * (0.001 if m.group(2) == "ms" else _UNITS[m.group(2) or ""])
    if value <= 0:
        raise ConfigError(f"duration {text!r} must be greater than 0")
    return value


def parse_jitter(text: str, interval: float) -> float:
    """``10%`` (of the interval) or a duration such as ``5s``; returned as a fraction of the interval."""
    t = text.strip()
    if t.endswith("%"):
        try:
            fraction = float(t[:-1]) / 100.0
        except ValueError:
            raise ConfigError(f"--jitter {text!r}: expected a percentage such as 10%") from None
    else:
        fraction = 0.0 if t in ("0", "0s") else parse_duration(t) / interval
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"--jitter {text!r} must be between 0% and 100% of the interval")
    return fraction


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the reconciler as a daemon",
        description="Reconcile every interval until stopped: re-read the manifests, observe, plan, apply and "
        "journal. An invalid manifest keeps the last good state; a failing toolbox backs off on its own; with "
        "PostgreSQL several daemons split the toolboxes under advisory locks.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    p.add_argument("--interval", default="30s", metavar="DURATION", help="time between cycles (default 30s)")
    p.add_argument("--jitter", default="10%", metavar="AMOUNT", help="delay each cycle by up to this (10%% or 5s)")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve the status page (/), /api/status, /healthz, /readyz, /metrics (e.g. 127.0.0.1:9464)",
    )
    p.add_argument("--allow-remote-listen", action="store_true", help="allow --listen on a non-loopback address")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument("--git-pull", action="store_true", help="git pull --ff-only the manifests before each cycle")
    p.add_argument(
        "--stop-timeout", default="30s", metavar="DURATION", help="bound on the last step after SIGTERM"
    )
    p.add_argument("--allow-mass-delete", metavar="REASON", help="allow cycles that delete or replace many")
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete managed servers missing from the manifests in every environment, as if each said "
        "policy.prune: true (the mass-delete and empty-set guards still apply)",
    )
    p.add_argument(
        "--notify",
        action="append",
        metavar="URL",
        help="POST a JSON message here on failures, refusals, stalls, unobserved toolboxes and fixed drift "
        "(repeatable; slack+https://... for Slack's format; also $RECONCILER_NOTIFY, which keeps the URL out "
        "of the process list)",
    )
    p.add_argument(
        "--notify-period",
        default="15m",
        metavar="DURATION",
        help="at most one message per event kind and environment per period (default 15m)",
    )
    p.add_argument(
        "--notify-unobserved-cycles",
        type=int,
        default=3,
        metavar="N",
        help="tell when a toolbox went unobserved for more than N cycles in a row (default 3)",
    )
    p.add_argument(
        "--pid-file",
        metavar="PATH",
        help="where reconcile-now finds the daemon (default: daemon.pid beside the journal)",
    )
    add_common(p)
    add_adopt(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reconciler.app.daemon import Daemon, DaemonConfig, NotifyConfig
    from reconciler.core.plan import Policy
    from reconciler.model.secrets import Secret
    from reconciler.presentation.status_site import status_pages

    interval = parse_duration(args.interval)
    config = DaemonConfig(
        paths=tuple(args.paths),
        interval=interval,
        jitter=parse_jitter(args.jitter, interval),
        listen=args.listen,
        once=args.once,
        env_filter=tuple(args.env) if args.env else None,
        git_pull=args.git_pull,
        stop_timeout=parse_duration(args.stop_timeout),
        allow_remote_listen=args.allow_remote_listen,
        prune=args.prune,
        adopt=args.adopt,
    )
    if args.listen:
        from reconciler.adapters.http_status import parse_listen

        parse_listen(args.listen, allow_remote=args.allow_remote_listen)  # refuse before starting anything
    logging.getLogger("reconciler").setLevel(
        min(logging.getLogger("reconciler").getEffectiveLevel(), logging.INFO)
    )
    daemon = Daemon(
        settings_from(args),
        config,
        policy=Policy(allow_mass_delete=args.allow_mass_delete),
        on_step=_log_step,
        site=status_pages,
        notify_config=NotifyConfig(
            urls=tuple(Secret(u) for u in args.notify or ()),
            period=parse_duration(args.notify_period),
            unobserved_cycles=_at_least_one(args.notify_unobserved_cycles),
        ),
        pid_path=Path(args.pid_file) if args.pid_file else None,
    )
    return daemon.run()


def _at_least_one(cycles: int) -> int:
    if cycles < 1:
        raise ConfigError(f"--notify-unobserved-cycles {cycles}: must be 1 or more")
    return cycles


def _log_step(result: StepResult) -> None:
    """One log line per applied step: under systemd, the journal of what changed and why it failed."""
    s = result.step
    detail = f": {result.message}" if result.message else ""
    from reconciler.core.outcomes import StepOutcome

    level = logging.WARNING if result.outcome == StepOutcome.FAILED else logging.INFO
    log.log(
        level,
        "%s %s/%s %s%s",
        s.action, s.environment_name, s.server, result.outcome, detail,
        extra=result.log_fields(),
    )  # fmt: skip
