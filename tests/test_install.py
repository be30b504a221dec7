"""install.sh into a scratch root: the files, user, unit and config a real box would get; a second
run keeps the config and the outbox; an upgrade switches releases; --uninstall keeps the data.

One venv build for the module (the `box` fixture); re-runs on the same source reuse it. The
tests share the root and run in file order: the uninstall test comes last.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "install.sh"

# A Debian-like start: root, and the static group dialout (gid 20 in base-passwd); no bluetooth
# group (bluez not installed), which the sysusers file then creates.
PASSWD = "root:x:0:0:root:/root:/bin/bash\n"
GROUP = "root:x:0:\ndialout:x:20:\n"


@dataclass
class Box:
    root: Path

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def install(self, *args: str, source: Path = ROOT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(source / "install.sh"), "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=900,
        )

    def gateway(self, *args: str) -> subprocess.CompletedProcess[str]:
        exe = self.path("/opt/gateway/.venv/bin/gateway")
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)

    def current(self) -> str:
        return os.readlink(self.path("/opt/gateway/current"))

    def ids(self) -> tuple[int, int]:
        user = _entry(self.path("/etc/passwd"), "gateway")
        return int(user[2]), int(user[3])


def _entry(path: Path, name: str) -> list[str]:
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"no {name} in {path}")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Box:
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    b = Box(root)
    res = b.install()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no service, udev or apt action was taken" in res.stdout
    return b


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_the_venv_runs_the_gateway_and_holds_no_test_extras(box: Box):
    res = box.gateway("--version")
    assert res.returncode == 0 and res.stdout.startswith("gateway "), res.stderr
    # The command technicians type is a relative link into the root, so it resolves there.
    link = box.path("/usr/local/bin/gateway")
    venv = box.path("/opt/gateway/.venv")
    assert link.is_symlink() and link.resolve() == (venv / "bin/gateway").resolve()
    assert venv.resolve().parent.parent == box.path("/opt/gateway/releases")
    pip = subprocess.run(
        [str(box.path("/opt/gateway/.venv/bin/python")), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {ln.split("==")[0].lower() for ln in pip.stdout.splitlines()}
    assert {"field-gateway", "paho-mqtt", "pymodbus", "bleak", "aiosqlite"} <= names
    assert not names & {"pytest", "hypothesis", "mypy", "ruff", "psutil"}, names
    # Only the program came along: no tests, benchmarks or CI scripts.
    src = box.path("/opt/gateway/current/src")
    assert (src / "firmware-configs/modbus/urm14.toml").is_file()
    assert not (src / "tests").exists() and not (src / "bench").exists()
    assert not (src / ".ci").exists()


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_the_config_is_the_production_example_and_passes_check(box: Box):
    config = box.path("/etc/gateway/gateway.toml")
    assert config.read_text() == (ROOT / "examples/production.toml").read_text()
    st = config.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:  # only root can give files away; a scratch root by a user keeps theirs
        assert (st.st_uid, st.st_gid) == (0, box.ids()[1])
    res = box.gateway("check", "--skip-files", "-c", str(config))
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr
    # The profiles the example names are found: the built-in ones beside the installed source.
    profiles = box.gateway("profiles")
    assert "urm14" in profiles.stdout and "water-temperature" in profiles.stdout


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_the_user_unit_udev_rules_and_state_directory(box: Box):
    user = _entry(box.path("/etc/passwd"), "gateway")
    assert user[5:] == ["/var/lib/gateway", "/usr/sbin/nologin"]
    for group in ("dialout", "bluetooth"):
        assert "gateway" in _entry(box.path("/etc/group"), group)[3].split(",")
    assert _entry(box.path("/etc/group"), "dialout")[2] == "20"  # the existing group, joined
    assert (
        box.path("/etc/sysusers.d/gateway.conf").read_text()
        == (ROOT / "systemd/gateway.sysusers").read_text()
    )

    unit = box.path("/etc/systemd/system/gateway.service")
    assert unit.read_text() == (ROOT / "systemd/gateway.service").read_text()
    # What the unit runs exists in the installed layout.
    for line in unit.read_text().splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            exe = box.path(line.split("=", 1)[1].split()[0])
            assert os.access(exe, os.X_OK), line
    rules = box.path("/etc/udev/rules.d/99-gateway-serial.rules")
    assert rules.read_text() == (ROOT / "systemd/99-gateway-serial.rules").read_text()

    state = box.path("/var/lib/gateway")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert (state.stat().st_uid, state.stat().st_gid) == box.ids()


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_a_second_run_keeps_an_edited_config_rules_and_the_outbox(box: Box):
    config = box.path("/etc/gateway/gateway.toml")
    edited = config.read_text().replace('id = "paddy-site-01"', 'id = "kita-07"')
    config.write_text(edited)
    rules = box.path("/etc/udev/rules.d/99-gateway-serial.rules")
    rules.write_text(rules.read_text() + "# my adapter\n")
    outbox = box.path("/var/lib/gateway/outbox.sqlite")
    outbox.write_bytes(b"rows waiting for the uplink")
    before = box.current()

    res = box.install("--config", "paddy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "reusing it" in res.stdout and "--config paddy not used" in res.stdout
    assert config.read_text() == edited
    assert rules.read_text().endswith("# my adapter\n")
    assert outbox.read_bytes() == b"rows waiting for the uplink"
    assert box.current() == before


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_a_config_the_new_version_refuses_stops_the_upgrade_with_78(box: Box):
    config = box.path("/etc/gateway/gateway.toml")
    good = config.read_text()
    unit = box.path("/etc/systemd/system/gateway.service")
    unit.unlink()  # would be rewritten by a run that went ahead
    try:
        config.write_text(good.replace('transport = "modbus-rtu"', 'transport = "modbus-rut"'))
        res = box.install()
        assert res.returncode == 78, res.stdout + res.stderr
        assert "modbus-rut" in res.stderr and "nothing was changed" in res.stderr
        assert not unit.exists()
        assert box.gateway("--version").returncode == 0  # the current release is untouched
    finally:
        config.write_text(good)
    assert box.install().returncode == 0 and unit.is_file()


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_an_example_with_its_outbox_in_tmp_is_refused(box: Box):
    config = box.path("/etc/gateway/gateway.toml")
    kept = config.read_text()
    config.unlink()
    try:
        res = box.install("--config", "demo")
        assert res.returncode == 78, res.stdout + res.stderr
        assert "/tmp/gateway-demo/outbox.sqlite" in res.stderr and "/var/lib/gateway" in res.stderr
        assert not config.exists()
    finally:
        config.write_text(kept)


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_an_upgrade_builds_a_new_release_and_keeps_the_previous_one(box: Box, tmp_path: Path):
    # A changed source is a new release: a copy of the program with one file changed.
    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("install.sh", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("gateway", "drivers", "firmware-configs", "examples", "systemd", "docs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "docs/upgrade-marker.md").write_text("a newer release\n")
    config = box.path("/etc/gateway/gateway.toml").read_text()
    before = box.current()

    res = box.install(source=source)
    assert res.returncode == 0, res.stdout + res.stderr
    after = box.current()
    assert after != before and "building" in res.stdout
    assert (box.path("/opt/gateway/current/src/docs/upgrade-marker.md")).is_file()
    assert sorted(os.listdir(box.path("/opt/gateway/releases"))) == sorted(
        [Path(before).name, Path(after).name]
    )
    assert box.gateway("--version").returncode == 0
    assert box.path("/etc/gateway/gateway.toml").read_text() == config


@pytest.mark.slow  # the module builds one venv (pip) in a scratch root
def test_uninstall_keeps_config_and_data_and_purge_removes_them(box: Box):
    # Last in this module: it removes the installation the tests above share.
    outbox = box.path("/var/lib/gateway/outbox.sqlite")
    outbox.write_bytes(b"still queued")
    res = box.install("--uninstall")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not box.path("/opt/gateway").exists()
    assert not box.path("/etc/systemd/system/gateway.service").exists()
    assert not box.path("/etc/sysusers.d/gateway.conf").exists()
    assert not box.path("/usr/local/bin/gateway").is_symlink()
    assert box.path("/etc/gateway/gateway.toml").is_file()
    assert box.path("/etc/udev/rules.d/99-gateway-serial.rules").is_file()
    assert outbox.read_bytes() == b"still queued"
    assert _entry(box.path("/etc/passwd"), "gateway")  # the user stays (files carry its uid)

    res = box.install("--uninstall", "--purge")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not box.path("/etc/gateway").exists()
    assert not box.path("/var/lib/gateway").exists()
    assert not box.path("/etc/udev/rules.d/99-gateway-serial.rules").exists()


def test_usage_errors_exit_2_and_touch_nothing(tmp_path: Path):
    for args in (["--bogus"], ["--purge"], ["--uninstall", "--config", "paddy"], ["--root"]):
        res = subprocess.run(
            [str(INSTALL), "--root", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 2, (args, res.stderr)
    assert os.listdir(tmp_path) == []
