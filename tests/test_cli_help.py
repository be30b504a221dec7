"""What `gateway` says about itself: its version, the simulators and scanners the drivers
declare, and the config path a subcommand reads when `-c` is not given."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.registry import driver_modules

ROOT = Path(__file__).resolve().parent.parent


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def declared(attr: str) -> set[str]:
    return {name for module in driver_modules() for name in getattr(module, attr, {})}


def test_version_prints_the_package_version():
    res = gateway("--version")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert res.returncode == 0
    assert res.stdout.strip() == f"gateway {project['version']}"


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_sim_and_scan_help_list_what_the_drivers_declare():
    for kind, attr in (("sim", "SIMULATORS"), ("scan", "SCANNERS")):
        names = declared(attr)
        assert names, attr
        res = gateway(kind, "--help")
        assert res.returncode == 0, res.stderr
        assert f"Available: {', '.join(sorted(names))}." in " ".join(res.stdout.split())
    top = gateway("--help").stdout
    assert "run a device simulator: " + ", ".join(sorted(declared("SIMULATORS"))) in " ".join(
        top.split()
    )


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_config_option_help_shows_its_default_path():
    for command in ("run", "check", "status", "test-alert", "profiles"):
        res = gateway(command, "--help")
        assert res.returncode == 0, res.stderr
        assert "(default: /etc/gateway/gateway.toml)" in " ".join(res.stdout.split()), command
