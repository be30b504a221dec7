"""Every shipped device profile loads, and every [[example]] vector in it holds; `gateway
decode` runs a profile's decoder from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.profiles import BUILTIN_DIR, ProfileLibrary, check_example, load_profile
from gateway.errors import Problem

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(BUILTIN_DIR.rglob("*.toml"))


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
    assert res.returncode == 0
    out = res.stdout.splitlines()
    assert json.loads(out[0]) == [{"quantity": "water_temperature", "value": 17.9, "unit": "degC"}]
    assert out[1].startswith("error: line 2: ")
    assert out[2].startswith("error: line 3: ") and "checksum" in out[2]
    assert json.loads(out[3])[0]["value"] == 18.5
    assert len(out) == 4


def test_decode_bad_input_and_unknown_profile_fail_with_a_message():
    res = decode("buoy-nmea", "$INMTW,17.9,C*00")
    assert res.returncode == 1 and "checksum" in res.stderr
    res = decode("no-such-profile", "00")
    assert res.returncode == 1 and 'no profile "no-such-profile"' in res.stderr
