"""``reconciler apply``: make the toolboxes match the manifests, or apply a saved plan if still valid."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from reconciler.cli.plan_cmd import add_adopt, add_common, settings_from, use_color
from reconciler.cli.saved_file import SavedPlan, looks_like_plan, read_plan_file
from reconciler.errors import ConfigError

EXAMPLE = """example:
  reconciler apply manifests/
  reconciler apply manifests/ --env research-toolbox --allow-mass-delete "retiring the old toolbox"
  reconciler plan manifests/ --out plan.json && reconciler apply plan.json

exit codes: 0 converged (every toolbox in scope observed, every step done), 1 nothing applied (error,
refused, incomplete, or every step failed), 4 partially applied (some steps failed, or steps were done
while another toolbox in scope was unobserved, refused or unsettled)
Apply takes each environment's lock (the daemon's): it waits up to --lock-wait for one another process
reconciles, then refuses naming that process ("environment X is being reconciled by pid N on host H").
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "apply",
        help="apply the changes a plan shows",
        description="Observe, plan and apply. Given a saved plan (plan.json, from `plan --out`), apply exactly "
        "its reviewed steps, within its saved scope, only if the database rows and listings of that scope are "
        "unchanged; no manifest is read (secrets are taken from the environment now).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories, or one saved plan")
    p.add_argument("--allow-mass-delete", metavar="REASON", help="allow a run that deletes or replaces many")
    p.add_argument(
        "--lock-wait",
        default="30s",
        metavar="DURATION",
        help="how long to wait for an environment another process is reconciling (default 30s), then refuse",
    )
    p.add_argument(
        "--auto-approve",
        action="store_true",
        help="do not ask for confirmation on a terminal (apply never asks when stdin is not a terminal)",
    )
    p.add_argument(
        "--no-color", action="store_true", help="no colour even on a terminal (also NO_COLOR, TERM=dumb)"
    )
    add_common(p, servers=True)
    add_adopt(p)
    p.set_defaults(handler=run)


def _saved(args: argparse.Namespace) -> SavedPlan | None:
    """The saved plan ``apply`` was given, if any; a plan file beside manifest paths, or with a scope option,
    is a usage error (the plan's own scope is what was reviewed)."""
    plans = [p for p in args.paths if looks_like_plan(p)]
    if not plans:
        return None
    if len(args.paths) != 1:
        raise ConfigError(
            f"apply takes one saved plan or manifest paths, not both ({', '.join(plans)} is a plan): "
            "`reconciler apply plan.json` or `reconciler apply manifests/`"
        )
    if args.env or args.server or args.adopt:
        raise ConfigError(
            "--env/--server/--adopt do not apply to a saved plan: its scope and policy are the ones reviewed"
        )
    saved = read_plan_file(plans[0])
    if not saved.savable:
        raise ConfigError(f"{plans[0]} has no basis (a `plan --format json` output?): make one with `plan --out`")
    if not saved.scope.refreshed:
        raise ConfigError(f"{plans[0]} was made with --no-refresh (live state not read): it cannot be applied")
    return saved


def _stderr_line(line: str) -> None:
    # One write per line: print() writes the newline separately, and other threads write lines too.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _say(json_lines: bool, text: str, **fields: object) -> None:
    """A line on stderr after the steps: with ``--log-format json`` a JSON object like the progress lines, so
    that every stderr line of a JSON apply parses."""
    import json

    from reconciler.presentation.escape import printable

    if json_lines:
        _stderr_line(json.dumps({"message": text, **fields}, sort_keys=True))
    else:
        _stderr_line(printable(text))


def run(args: argparse.Namespace) -> int:
    from reconciler.app.reconcile import reconcile_once
    from reconciler.cli.run_cmd import parse_duration
    from reconciler.core.observed import Observed
    from reconciler.core.outcomes import RunOutcome, StepOutcome
    from reconciler.core.plan import NoticeKind, Plan, Policy
    from reconciler.core.scope import PlanScope
    from reconciler.core.verdict import Verdict
    from reconciler.presentation.exit_codes import apply_exit_code
    from reconciler.presentation.progress import Progress
    from reconciler.presentation.render import render_plan
    from reconciler.runtime.cycle import step_keys
    from reconciler.runtime.execute import StepResult
    from reconciler.runtime.saved_plan import Basis

    settings = settings_from(args)
    saved = _saved(args)
    paths: list[str] = args.paths
    env_filter, servers = args.env, args.server
    basis = desired = saved_steps = None
    if saved is not None:
        basis = Basis.from_dict(saved.data["basis"])
        desired = saved.desired()
        saved_steps = step_keys(saved.plan)
        env_filter = list(saved.scope.environments) if saved.scope.environments else None
        servers = list(saved.scope.servers) if saved.scope.servers else None
        paths = []
    color = use_color(sys.stdout, args.no_color)
    scope = (
        saved.scope
        if saved is not None
        else PlanScope(
            environments=tuple(args.env) if args.env else None, servers=tuple(args.server) if args.server else None
        )
    )
    progress = Progress(_stderr_line, time.monotonic, json_lines=args.log_format == "json")

    def approve(plan: Plan, verdict: Verdict, observed: Observed) -> bool:
        """The plan first; then, on a terminal and for manifests only, the operator's yes."""
        sys.stdout.write(render_plan(plan, "text", color=color, verdict=verdict, scope=scope))
        sys.stdout.flush()
        if saved is not None or args.auto_approve or not plan.steps or not sys.stdin.isatty():
            return True
        try:
            answer = input(f"\nApply these {len(plan.steps)} step(s)? Only 'yes' is accepted: ")
        except EOFError:
            answer = ""
        return answer.strip() == "yes"

    def on_step(result: StepResult) -> None:
        progress.end(result.step, str(result.outcome), result.message, result.run_id)

    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(1.0):
            progress.tick()

    thread = threading.Thread(target=ticker, name="apply-progress", daemon=True)
    thread.start()
    try:
        result = reconcile_once(
            settings,
            paths,
            apply=True,
            env_filter=env_filter,
            servers=servers,
            desired=desired,
            saved_steps=saved_steps,
            policy=Policy(allow_mass_delete=args.allow_mass_delete),
            saved_basis=basis,
            on_step=on_step,
            on_start=progress.start,
            approve=approve,
            lock_wait=parse_duration(args.lock_wait),
            adopt=args.adopt,
        )
    finally:
        stop.set()
        thread.join()
    json_lines = args.log_format == "json"
    if result.cancelled:
        _say(json_lines, "Apply cancelled: nothing applied.", event="cancelled")
        return 1
    the_plan = result.plan or Plan(steps=())
    applied = result.results
    # Failed steps, and steps skipped or left pending for a reason the operator must see (a toolbox that failed
    # mid-apply, a held name, a deploy still pulling): one line each.
    # An unready step (its server never passed readiness) is not done either: its line names the probe's error.
    unsettled = (StepOutcome.FAILED, StepOutcome.UNREADY)
    failed = [r for r in applied if r.outcome in unsettled or r.notice is not None]
    for r in failed:
        where = f"{r.step.environment_name}/{r.step.server}"
        _say(json_lines, f"{r.outcome}: {r.step.action} {where}: {r.message}", event="step",
             environment=r.step.environment_name, server=r.step.server, action=str(r.step.action),
             outcome=str(r.outcome))  # fmt: skip
    # A rollout that halted says so once, naming the toolboxes that keep the version they run.
    for n in the_plan.notices:
        if n.kind is NoticeKind.ROLLOUT_HALTED:
            _say(json_lines, f"rollout-halted: {n.environment_name}/{n.server}: {n.message}", event="notice",
                 environment=n.environment_name, server=n.server, outcome="rollout-halted")  # fmt: skip
    for err in the_plan.errors:
        _say(json_lines, f"error: {err}", event="error")
    outcome = result.outcome or RunOutcome.NOTHING_APPLIED
    done = f"apply: {len(applied) - len(failed)} of {len(applied)} steps done; run {outcome}"
    _say(json_lines, done, event="summary", outcome=str(outcome), run_id=result.run_id)
    return apply_exit_code(outcome, applied_any=any(r.outcome == StepOutcome.OK for r in applied))
