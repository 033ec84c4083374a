"""``reconciler demo``: the simulator, an embedded SQLite state and the reconcile loop on examples/, in one
process, for a first look on a machine with nothing else set up.

Everything lives in one directory (default ``.reconciler/demo``): ``manifests/`` (a copy of the shipped
examples, for the user to edit while the demo runs), ``state.db`` (the toolbox database), ``journal.db`` and
``secret.key``. The state database and the manifest copy are recreated on every start: the simulated
toolboxes live only as long as this process, so rows left by the previous run would describe containers that
no longer exist (at addresses and a port that changed). The journal is kept, so earlier runs stay readable.

The demo reads none of the ``RECONCILER_*`` / ``BACKEND_TO_DTMA_API_KEY`` settings: it must never register
toolboxes in, or send a token to, a real deployment configured in the same shell.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.app.daemon import CycleReport, Daemon, DaemonConfig
from reconciler.app.status_site import SiteFactory
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Plan
from reconciler.errors import ConfigError
from reconciler.model.secrets import Secret
from reconciler.model.spec import Desired
from reconciler.resources import data_dir
from reconciler.runtime.execute import StepResult
from reconciler.settings import Settings
from reconciler.simulator import Simulator, SimulatorError
from reconciler.state_dir import make_state_dir

DEFAULT_DIR = ".reconciler/demo"
DEFAULT_INTERVAL = 10.0
# The first toolbox listens on 127.0.0.1; the others on the same port at these addresses, the first that
# binds (127.0.0.2 and up on Linux, where all of 127.0.0.0/8 is loopback; ::1 on macOS, where it is not).
SECOND_HOSTS = ("127.0.0.{n}", "::1")

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    directory: Path = Path(DEFAULT_DIR)
    once: bool = False
    interval: float = DEFAULT_INTERVAL
    listen: str | None = None


@dataclass(frozen=True)
class DemoToolbox:
    name: str  # the environment name the manifests use
    ip: str  # what is registered as its public IP address
    port: int  # the DTMA port (the same for every toolbox)


def examples_dir() -> Path:
    """examples/ of the checkout, or the copy inside the installed wheel."""
    return data_dir("examples")


def copy_examples(directory: Path) -> Path:
    """``directory``/manifests with a fresh copy of the shipped example manifests (``*.yaml`` only)."""
    target = directory / "manifests"
    target.mkdir(parents=True, exist_ok=True)
    for old in [*target.glob("*.yaml"), *target.glob("*.yml")]:
        old.unlink()
    for example in sorted(examples_dir().glob("*.yaml")):
        shutil.copyfile(example, target / example.name)
    return target


def demo_secret_values(desired: Desired, environ: Mapping[str, str]) -> dict[str, str]:
    """A random stand-in for every ``secretFromEnv`` variable the manifests use and ``environ`` lacks."""
    names = {
        ref.env_var for env in desired.environments for server in env.servers for _, ref in server.secret_refs
    }
    return {name: f"demo-{secrets.token_hex(12)}" for name in sorted(names) if name not in environ}


@contextlib.contextmanager
def demo_lock(directory: Path) -> Iterator[None]:
    """One demo per directory: a second one would recreate the state under the first one's feet."""
    make_state_dir(directory)  # .reconciler/ gets its .gitignore
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the demo still runs
        yield
        return
    with open(directory / "demo.lock", "w", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another `reconciler demo` is running with --dir {directory}") from None
        yield


def start_simulators(
    count: int, token: str, *, port: int = 0, second_hosts: Sequence[str] = SECOND_HOSTS
) -> list[Simulator]:
    """``count`` toolboxes, one per loopback address, all on one port (the reconciler has one DTMA port)."""
    first = Simulator(toolboxes=1, host="127.0.0.1", port=port, token=token)
    sims = [first]
    chosen = int(first.addresses[0].rsplit(":", 1)[1])
    try:
        for n in range(2, count + 1):
            sims.append(_bind_one(token, chosen, [h.format(n=n) for h in second_hosts], sims))
    except BaseException:
        for sim in sims:
            sim.stop()
        raise
    for sim in sims:
        sim.start()
    return sims


def offer_declared(sims: Sequence[Simulator], desired: Desired) -> None:
    """The simulated images' MCP servers offer what the examples declare (their capabilities, their pinned
    tools): the demo shows a healthy fleet, in which offer drift is something an edit brings about."""
    for spec in desired.environments:
        for server in spec.servers:
            settings: dict[str, object] = {"capabilities": sorted({"tools", *server.capabilities})}
            if server.tools is not None:
                settings["tools"] = list(server.tools)
            for sim in sims:
                sim.set_mcp(server.image, **settings)


def _bind_one(token: str, port: int, hosts: Sequence[str], taken: Sequence[Simulator]) -> Simulator:
    used = {a for s in taken for a in s.addresses}
    errors: list[str] = []
    for host in hosts:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if address in used:
            continue
        try:
            return Simulator(toolboxes=1, host=host, port=port, token=token)
        except SimulatorError as exc:
            errors.append(str(exc))
    raise ConfigError("cannot start the demo's simulated toolboxes: " + "; ".join(errors or ["no address left"]))


def prepare_state(directory: Path, toolboxes: Sequence[DemoToolbox]) -> str:
    """Recreate ``state.db`` in ``directory`` with the migrations applied and ``toolboxes`` registered;
    returns its database URL."""
    from reconciler.app.stores import migrate_database, open_store

    state = directory / "state.db"
    for leftover in (state, state.with_name("state.db-wal"), state.with_name("state.db-shm")):
        leftover.unlink(missing_ok=True)
    url = f"sqlite:///{state.resolve()}"
    migrate_database(url)
    store = open_store(url)
    try:
        for tb in toolboxes:
            store.add_environment(tb.name, tb.ip)
    finally:
        store.close()
    return url


class StepPrinter:
    """``create research-toolbox/context7 ok`` per applied step; callable from the apply worker threads."""

    def __init__(self, echo: Echo) -> None:
        self._echo = echo
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def __call__(self, result: StepResult) -> None:
        s = result.step
        line = f"  {s.action} {s.environment_name}/{s.server} {result.outcome}"
        if result.outcome != StepOutcome.OK and result.message:
            line += f": {result.message}"
        with self._lock:
            self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
            self._echo(line)


class CyclePrinter:
    """After each cycle: what it planned (and left alone), or why it could not; an in-sync cycle that follows
    an in-sync cycle prints nothing, so an idle demo stays quiet."""

    def __init__(self, echo: Echo, *, once: bool) -> None:
        self._echo, self._once = echo, once
        self._cycle = 0
        self._quiet = False

    def __call__(self, report: CycleReport) -> None:
        self._cycle += 1
        if report.errors:
            self._echo(f"cycle {self._cycle} failed: " + "; ".join(report.errors))
            self._quiet = False
            return
        if report.plan is None:
            return
        in_sync = report.verdict.complete and not (report.plan.steps or report.plan.notices or report.plan.errors)
        if in_sync and self._quiet:
            return
        head, *rest = describe_plan(report.plan, complete=report.verdict.complete)
        tail = " (quiet until something changes)" if in_sync and not self._once else ""
        run = f", journal run {report.run_id}" if report.run_id is not None else ""
        self._echo(f"cycle {self._cycle}: {head}{run}{tail}")
        for line in rest:
            self._echo(line)
        self._quiet = in_sync


def describe_plan(plan: Plan, *, complete: bool = True) -> list[str]:
    """What the plan held (one line), then what it left alone and why, and its errors. "In sync" only when
    every toolbox was observed and nothing is left unsettled (``complete``)."""
    counts: dict[str, int] = {}
    for step in plan.steps:
        counts[str(step.action)] = counts.get(str(step.action), 0) + 1
    head = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    idle = (
        "in sync, nothing to do" if complete else "incomplete: not every toolbox was seen or settled (notes below)"
    )
    lines = [f"planned {head}" if head else idle]
    for n in plan.notices:
        where = f"{n.environment_name}/{n.server}" if n.server else n.environment_name
        lines.append(f"  note: {n.kind} {where}: {n.message}")
    lines += [f"  error: {e}" for e in plan.errors]
    return lines


def run_demo(
    config: DemoConfig,
    *,
    echo: Echo,
    environ: Mapping[str, str] | None = None,
    token: str | None = None,
    site: SiteFactory | None = None,
) -> int:
    """Start the simulated toolboxes, register them, reconcile the examples; once, or until SIGINT/SIGTERM.
    ``token`` (default: random) is the DTMA bearer token the simulator and the reconciler share; ``site``
    builds the status page served on ``config.listen`` (its address is printed)."""
    from reconciler.model.loader import load_manifests

    env = dict(os.environ if environ is None else environ)
    directory = config.directory
    with demo_lock(directory):
        manifests = copy_examples(directory)
        desired = load_manifests([manifests])
        names = [e.environment for e in desired.environments]
        token = token or secrets.token_urlsafe(32)  # shared by the simulator and the reconciler, never shown
        sims = start_simulators(len(names), token)
        try:
            offer_declared(sims, desired)
            toolboxes = []
            for name, sim in zip(names, sims, strict=True):
                host, _, port = sim.addresses[0].rpartition(":")
                toolboxes.append(DemoToolbox(name, host.strip("[]"), int(port)))
            url = prepare_state(directory, toolboxes)
            settings = Settings(
                database_url=url,
                journal_path=str((directory / "journal.db").resolve()),
                dtma_port=toolboxes[0].port,
                dtma_token=Secret(token),
            )
            stand_ins = demo_secret_values(desired, env)
            env.update(stand_ins)
            echo(f"simulated toolboxes (DTMA agents on loopback, port {toolboxes[0].port}):")
            for tb in toolboxes:
                echo(f"  {tb.name:<18} {tb.ip}")
            echo(f"state: {directory / 'state.db'} (recreated), journal: {directory / 'journal.db'}")
            if stand_ins:
                echo(f"demo values for unset secrets: {', '.join(sorted(stand_ins))}")
            echo(f"manifests: {manifests} (a fresh copy of {examples_dir()})")
            if not config.once:
                every = f"a cycle every {config.interval:g}s until Ctrl-C"
                echo(f"{every}; edit a manifest in {manifests} to see it applied")
            printer = StepPrinter(echo)
            daemon = Daemon(
                settings,
                DaemonConfig(
                    paths=(str(manifests),), interval=config.interval, listen=config.listen, once=config.once
                ),
                environ=env,
                on_step=printer,
                on_cycle=CyclePrinter(echo, once=config.once),
                site=site,
                on_serving=lambda address: echo(
                    f"status page: http://{address}/ (JSON: /api/status, /api/runs; probes: /healthz, /readyz)"
                ),
            )
            code = daemon.run()
        finally:
            for sim in sims:
                sim.stop()
    done = printer.counts
    summary = ", ".join(f"{n} {k}" for k, n in sorted(done.items())) or "nothing to do"
    echo(f"demo {'finished' if config.once else 'stopped'}: steps {summary}")
    echo(f"read the journal: reconciler journal --journal {directory / 'journal.db'}")
    return code
