"""examples/systemd: the unit runs `reconciler run` with flags it accepts, and the env file names real settings."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from reconciler.app.demo import examples_dir
from reconciler.cli import build_parser
from reconciler.cli.run_cmd import parse_duration
from reconciler.model.loader import load_manifests
from reconciler.settings import from_environ

SYSTEMD = Path(__file__).resolve().parents[3] / "examples" / "systemd"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string((SYSTEMD / "mcp-reconciler.service").read_text())
    return unit


def _env_file() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (SYSTEMD / "mcp-reconciler.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key.isidentifier() and not key.startswith("export"), line
            values[key] = value
    return values


def test_exec_start_is_reconciler_run_with_flags_it_accepts() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/mcp-reconciler/venv/bin/reconciler" and argv[1] == "run"
    assert argv[2] == "/srv/mcp-manifests"
    flags = argv[3:]
    args = build_parser().parse_args(argv[1:])  # SystemExit (test error) on any flag run rejects
    assert args.command == "run" and args.git_pull
    options = dict(zip(flags, [*flags[1:], ""], strict=True))
    assert parse_duration(options["--interval"]) == 30.0
    assert options["--listen"] == "127.0.0.1:9464"  # loopback: metrics are not for the world
    assert "--git-pull" in flags


def test_service_runs_unprivileged_stops_on_sigterm_and_writes_only_its_state() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "simple"
    assert service["User"] == "mcp-reconciler"
    assert service["EnvironmentFile"] == "/etc/mcp-reconciler/env"
    assert service["KillSignal"] == "SIGTERM"
    assert shlex.split(service["ExecReload"])[1:] == ["-HUP", "$MAINPID"]  # systemctl reload: reconcile now
    assert int(service["TimeoutStopSec"]) >= 30  # longer than the daemon's bounded wait for a running step
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["ProtectSystem"] == "strict"
    writable = service["ReadWritePaths"].split()
    assert service["WorkingDirectory"] == "/var/lib/mcp-reconciler" and service["WorkingDirectory"] in writable
    assert "/srv/mcp-manifests" in writable  # --git-pull updates the clone
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_env_file_names_the_settings_the_reconciler_reads_and_every_example_secret() -> None:
    values = _env_file()
    settings = from_environ(values)  # also proves every value parses (DTMA_PORT is a number)
    assert settings.database_url == values["RECONCILER_DATABASE_URL"]
    assert settings.dtma_token is not None and values["BACKEND_TO_DTMA_API_KEY"] == "CHANGE-ME"
    journal = settings.journal_path
    assert journal.startswith(_unit()["Service"]["WorkingDirectory"] + "/")  # inside the writable state dir
    desired = load_manifests([examples_dir()])
    wanted = {ref.env_var for e in desired.environments for s in e.servers for _, ref in s.secret_refs}
    assert wanted <= set(values)
    assert all(values[name] == "CHANGE-ME" for name in wanted)  # placeholders, never a real-looking value
    assert "0600" in (SYSTEMD / "mcp-reconciler.env").read_text()
