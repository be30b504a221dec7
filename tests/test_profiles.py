"""Every shipped device profile loads, and every [[example]] vector in it holds; `gateway
decode` runs a profile's decoder from the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.ble import bthome
from gateway.config.profiles import BUILTIN_DIR, ProfileLibrary, check_example, load_profile
from gateway.errors import Problem

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(BUILTIN_DIR.rglob("*.toml"))
MAC = "54:48:E6:8F:80:A5"


def test_profiles_are_shipped_for_every_family():
    families = {p.parent.name for p in FILES}
    assert {"modbus", "serial"} <= families


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_profile_loads_and_its_examples_hold(path):
    problems: list[Problem] = []
    profile = load_profile(path, problems)
    assert not problems, "\n".join(map(str, problems))
    assert profile is not None and profile.examples, "a profile needs [[example]] vectors"
    for example in profile.examples:
        assert check_example(profile.decoder, example) is None


def test_names_are_unique_across_families():
    names = [p.stem for p in FILES]
    assert len(names) == len(set(names))


def test_a_wrong_example_is_reported_with_file_and_index(tmp_path):
    src = (BUILTIN_DIR / "modbus" / "sn3000-wind-vane.toml").read_text()
    broken = src.replace("value = 90", "value = 91", 1)
    assert broken != src
    (tmp_path / "vane.toml").write_text(broken)
    problems: list[Problem] = []
    ProfileLibrary([tmp_path]).get("vane", problems, "x")
    assert problems and problems[0].path.endswith("vane.toml: example[0]")
    assert "expected" in problems[0].message and "91" in problems[0].message


def decode(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "decode", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_decode_one_input_prints_a_json_array():
    res = decode("sn3000-wind-vane", "rtu:01 03 04 00 02 00 5A DB C8")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [
        {"quantity": "wind_sector", "value": 2, "unit": ""},
        {"quantity": "wind_direction", "value": 90, "unit": "deg"},
    ]


def test_decode_stdin_goes_on_after_a_bad_line():
    lines = "$INMTW,17.9,C*1B\ngarbage\n$INMTW,17.9,C*1C\n\n$INMTW,18.5,C*18\n"
    res = decode("buoy-nmea", "-", stdin=lines)
    assert res.returncode == 1  # every line was tried; the status says some failed
    out = res.stdout.splitlines()
    assert json.loads(out[0]) == [{"quantity": "water_temperature", "value": 17.9, "unit": "degC"}]
    assert out[1].startswith("error: line 2: ")
    assert out[2].startswith("error: line 3: ") and "checksum" in out[2]
    assert json.loads(out[3])[0]["value"] == 18.5
    assert len(out) == 4


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_decode_bad_input_and_unknown_profile_fail_with_a_message():
    res = decode("buoy-nmea", "$INMTW,17.9,C*00")
    assert res.returncode == 1 and "checksum" in res.stderr
    res = decode("no-such-profile", "00")
    assert res.returncode == 1 and 'no profile "no-such-profile"' in res.stderr


def test_decode_stdin_exits_0_only_when_every_line_decoded():
    good = "$INMTW,17.9,C*1B\n\n$INMTW,18.5,C*18\n"
    res = decode("buoy-nmea", "-", stdin=good)
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 2
    res = decode("buoy-nmea", "-", stdin=good + "$INMTW,17.9,C*00\n")
    assert res.returncode == 1 and "error: line 4: " in res.stdout


def test_decode_bindkey_of_decimal_digits_stays_text():
    # A real key that happens to be all decimal digits: JSON would make it a number.
    key = "12345678901234567890123456789012"
    payload = bthome.encrypt(bytes.fromhex("02CA0903BF13"), bytes.fromhex(key), MAC, 0x00112233)
    res = decode("bthome", f"{MAC} {payload.hex(' ')}", "-p", f"bindkey={key}")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [
        {"quantity": "temperature", "value": 25.06, "unit": "degC"},
        {"quantity": "humidity", "value": 50.55, "unit": "%"},
    ]


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_decode_params_take_the_type_the_profile_declares():
    # urm14 declares mount_height a number; eddystone-uid-tag declares `instance` text.
    res = decode("urm14", "holding:5=8300,6=251", "-p", "mount_height=1000")
    assert res.returncode == 0, res.stderr
    assert {"quantity": "water_level", "value": 17.0, "unit": "cm"} in json.loads(res.stdout)
    res = decode("urm14", "holding:5=8300,6=251", "-p", "mount_height=high")
    assert res.returncode == 2
    assert "-p mount_height: expected a number, got 'high'" in res.stderr
    res = decode("urm14", "holding:5=8300,6=251", "-p", "mount_height")
    assert res.returncode == 2 and "expected KEY=VALUE" in res.stderr
    profile = ProfileLibrary().get("eddystone-uid-tag", [], "x")
    assert profile is not None
    tag = profile.examples[0]
    res = decode("eddystone-uid-tag", tag.input, *(f"-p{k}={v}" for k, v in tag.params.items()))
    assert res.returncode == 0, res.stderr  # instance "000000000007" stays text, and matches


def profiles(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "profiles", "-c", "/nonexistent.toml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_profiles_lists_every_shipped_profile_with_its_quantities():
    res = profiles()
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()}
    shipped = {p.stem for p in BUILTIN_DIR.rglob("*.toml")}
    assert set(lines) == shipped
    assert "modbus" in lines["urm14"] and "water_level (cm)" in lines["urm14"]
    assert "DFRobot URM14" in lines["urm14"]
    assert "trap_state" in lines["trap-receiver"] and "line" in lines["trap-receiver"]


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_profiles_name_shows_one_in_detail_and_an_unknown_one_gets_a_hint(tmp_path):
    res = profiles("urm14")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("urm14 (modbus): DFRobot URM14")
    assert "mount_height (number)" in res.stdout
    assert re.search(r"water_level\s+cm", res.stdout)
    res = profiles("urm41")
    assert res.returncode == 1
    assert 'did you mean "urm14"?' in res.stderr and "`gateway profiles`" in res.stderr
    # An extra directory is searched first and listed too.
    src = (BUILTIN_DIR / "modbus" / "sn3000-wind-vane.toml").read_text()
    (tmp_path / "my-vane.toml").write_text(src.replace('name = "sn3000-wind-vane"', ""))
    res = profiles("--profile-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("my-vane ") for line in res.stdout.splitlines())


def test_check_an_unknown_profile_says_did_you_mean_and_names_the_command(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nid = "g"\n[[buses]]\nname = "rs485"\ntransport = "modbus-rtu"\n'
        'port = "/dev/ttyUSB0"\n[[buses.devices]]\nid = "paddy-01"\nprofile = "urm41"\n'
        "unit = 12\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 78
    (problem,) = [line for line in res.stderr.splitlines() if "urm41" in line]
    assert problem.startswith('buses[0].devices[0].profile: no profile "urm41" in ')
    assert problem.endswith('did you mean "urm14"? (`gateway profiles` lists them)')
