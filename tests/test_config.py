"""Config parsing: golden error messages with paths, hints and values; the check command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.config import loader as config
from gateway.errors import ConfigError
from tests.certs import make_ca

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[gateway]
id = "paddy-site-01"
latitude = 36.1
longitude = 137.9

[uplink]
host = "platform.example"
port = 8883
apikey = "k3y"
format = "fiware-ul"
[uplink.tls]
ca = "/etc/gateway/ca.pem"

[store]
path = "/var/lib/gateway/outbox.sqlite"
sync = "normal"
max_rows = 1000

[[buses]]
name = "synthetic"
transport = "synthetic"
[[buses.devices]]
id = "paddy-01"
interval = 600
attributes = { water_level = "wl" }
params = { mount_height = 1200.0 }
points = [ { quantity = "water_level", unit = "cm", pattern = "sine", low = 3, high = 6 } ]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(text)
    return [str(p) for p in info.value.problems]


def test_good_config_parses_into_frozen_objects():
    cfg = config.parse(GOOD)
    assert cfg.site.id == "paddy-site-01" and cfg.site.latitude == 36.1
    assert cfg.uplink.port == 8883 and cfg.uplink.tls.ca == "/etc/gateway/ca.pem"
    assert cfg.uplink.keepalive == 600 and cfg.uplink.qos == 1
    assert cfg.uplink.client_id == "gateway-paddy-site-01"
    assert cfg.uplink.status_topic == "gateway/paddy-site-01/status"
    assert cfg.store.sync == "normal" and cfg.store.max_rows == 1000
    (device,) = cfg.devices()
    assert device.id == "paddy-01" and device.interval == 600.0
    assert device.attributes == {"water_level": "wl"}
    assert device.params == {"mount_height": 1200.0}
    with pytest.raises(AttributeError):
        cfg.uplink.port = 1  # type: ignore[misc]


def test_port_out_of_range():
    bad = GOOD.replace("port = 8883", "port = 70000")
    assert problems(bad) == ["uplink.port: expected 1..65535, got 70000"]


def test_unknown_key_with_hint():
    bad = GOOD.replace('apikey = "k3y"', 'apikye = "k3y"')
    assert problems(bad) == ['uplink.apikye: unknown key (did you mean "apikey"?)']


def test_wrong_type_and_bad_choice():
    bad = GOOD.replace('format = "fiware-ul"', 'format = "fiware-xml"').replace(
        'sync = "normal"', "sync = 1"
    )
    assert problems(bad) == [
        "uplink.format: expected one of fiware-json, fiware-ul, json, msgpack; "
        'got "fiware-xml" (did you mean "fiware-ul"?)',
        "store.sync: expected a string, got 1",
    ]


def test_device_paths_are_indexed():
    bad = GOOD.replace("interval = 600", "interval = -1").replace(
        'pattern = "sine"', 'pattern = "sin"'
    )
    assert problems(bad) == [
        "buses[0].devices[0].interval: expected >= 0.0, got -1",
        "buses[0].devices[0].points[0].pattern: expected one of sine, ramp, random, constant, "
        'cycle, counter; got "sin" (did you mean "sine"?)',
    ]


def test_unknown_transport_lists_known_ones():
    bad = GOOD.replace('transport = "synthetic"', 'transport = "lorawan"')
    (msg,) = [p for p in problems(bad) if "transport" in p]
    assert msg.startswith('buses[0].transport: unknown transport "lorawan"; known: ')
    assert "synthetic" in msg


def test_unknown_transport_is_one_problem_not_one_per_driver_key():
    # A typo in the transport: the Modbus bus and device keys nobody can read are not blamed.
    bad = GOOD + (
        '[[buses]]\nname = "rs485"\ntransport = "modbus-rtx"\nport = "/dev/ttyUSB0"\n'
        'baud = 9600\ntimeout = 1.0\n[[buses.devices]]\nid = "paddy-02"\nprofile = "urm14"\n'
        "unit = 12\nparams = { mount_height = 1200.0 }\n"
    )
    (msg,) = problems(bad)
    assert msg.startswith('buses[1].transport: unknown transport "modbus-rtx"; known: ')
    assert problems(bad.replace('transport = "modbus-rtx"\n', "")) == [
        "buses[1].transport: required key is missing"
    ]


def test_an_empty_file_is_one_problem(tmp_path):
    for text in ("", "# only a comment\n\n"):
        path = tmp_path / "gateway.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert [str(p) for p in info.value.problems] == [
            f'{path}: empty (or only comments); a config needs at least [gateway] id = "..."'
        ]


def test_missing_required_and_duplicates():
    bad = GOOD.replace('id = "paddy-site-01"', "") + GOOD[GOOD.index("[[buses]]") :]
    assert problems(bad) == [
        "gateway.id: required key is missing",
        'buses[1].devices[0].id: duplicate device id "paddy-01" (first at buses[0].devices[0].id)',
        'buses[1].name: duplicate bus name "synthetic" (first at buses[0].name)',
    ]


def test_a_duplicate_device_id_names_both_places():
    devices = "".join(
        f'[[buses.devices]]\nid = "{d}"\npoints = [ {{ quantity = "water_level" }} ]\n'
        for d in ("a", "b", "x")
    )
    second = '[[buses]]\nname = "more"\ntransport = "synthetic"\n'
    bad = (
        '[gateway]\nid = "g"\n[[buses]]\nname = "one"\ntransport = "synthetic"\n'
        + devices
        + second
        + devices.replace('"a"', '"c"').replace('"b"', '"d"')
    )
    assert problems(bad) == [
        'buses[1].devices[2].id: duplicate device id "x" (first at buses[0].devices[2].id)'
    ]


def test_topic_unsafe_ids_and_tls_key():
    bad = GOOD.replace('id = "paddy-01"', 'id = "paddy/01"').replace(
        'ca = "/etc/gateway/ca.pem"', 'cert = "/etc/gateway/c.pem"'
    )
    assert problems(bad) == [
        "uplink.tls.key: a client certificate needs its key",
        "buses[0].devices[0].id: must not contain '/', '+', '#' or spaces, got \"paddy/01\"",
    ]


def test_missing_profile_is_reported_at_the_device():
    bad = GOOD.replace("interval = 600", 'interval = 600\nprofile = "no-such-sensor"')
    (msg,) = problems(bad)
    assert msg.startswith('buses[0].devices[0].profile: no profile "no-such-sensor" in ')


def test_invalid_toml_names_the_line():
    (msg,) = problems("[gateway\nid = 1")
    assert msg.startswith("<config>: not valid TOML: ") and "line 1" in msg


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_check_command_exit_codes(tmp_path):
    # 78 (EX_CONFIG) for every bad config, the code `gateway run` exits with: systemd's
    # RestartPreventExitStatus=78 then holds for ExecStartPre=gateway check too.
    _, _, ca = make_ca(tmp_path, "ca")
    good = tmp_path / "good.toml"
    good.write_text(GOOD.replace("/etc/gateway/ca.pem", ca))
    ok = run_cli("check", "-c", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "1 device(s)" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("port = 8883", "port = 70000"))
    res = run_cli("check", "-c", str(bad))
    assert res.returncode == 78
    assert "uplink.port: expected 1..65535, got 70000" in res.stderr
    missing = run_cli("check", "-c", str(tmp_path / "nope.toml"))
    assert missing.returncode == 78 and "cannot read" in missing.stderr


@pytest.mark.parametrize("command", ["check", "status", "run"])
@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_a_config_file_that_is_not_utf8_is_a_clear_problem(tmp_path, command):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(
        GOOD.replace('"paddy-site-01"', '"paddy-site-01"\nname = "Äcker"').encode("latin-1")
    )
    res = run_cli(command, "-c", str(cfg))
    out = res.stdout + res.stderr
    assert "Traceback" not in out
    assert f"{cfg}: not UTF-8 text: byte 0xc4 on line 4 (save the file as UTF-8)" in out
    if command != "status":  # status is helper "store"'s: it still exits 1 on a bad config
        assert res.returncode == 78


def test_run_log_level_is_one_of_its_choices():
    res = run_cli("run", "--log-level", "verbose", "-c", "/nonexistent.toml")
    assert res.returncode == 2
    assert "invalid choice: 'verbose'" in res.stderr
    helptext = run_cli("run", "--help").stdout
    assert "debug, info, warning, error" in helptext


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.name)
@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_examples_are_accepted(path):
    res = run_cli("check", "-c", str(path))
    assert res.returncode == 0, res.stderr


def test_profile_must_match_the_bus_transport():
    bad = GOOD.replace("interval = 600", 'interval = 600\nprofile = "sn3000-anemometer"')
    assert problems(bad) == [
        'buses[0].devices[0].profile: "sn3000-anemometer" is a modbus profile; transport '
        '"synthetic" decodes no profiles'
    ]


@pytest.mark.parametrize("values", ["5", '"set"', "[{ a = 1 }]", "[[1, 2]]"])
def test_a_cycle_pattern_with_values_that_are_not_an_array_of_scalars_is_a_problem(values):
    bad = GOOD.replace(
        'pattern = "sine", low = 3, high = 6',
        f'pattern = "cycle", values = {values}',
    )
    assert problems(bad) == [
        "buses[0].devices[0].points[0].values: expected an array of numbers, booleans or "
        f"strings, got {tomllib.loads('v = ' + values)['v']!r}"
    ]
