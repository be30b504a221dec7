"""`gateway sim ble`, the recorded field, the demo hook and `gateway decode` for BLE profiles."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from drivers.ble import demo
from drivers.ble.field import BINDKEY, SEALED, Field
from drivers.ble.replay import read_lines
from drivers.ble.router import Emission, Router
from gateway.config import loader as config

ROOT = Path(__file__).resolve().parent.parent


def _gateway(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_record_writes_a_replay_every_profile_decodes(tmp_path: Path) -> None:
    path = tmp_path / "field.replay"
    result = _gateway("sim", "ble", "--record", str(path), "--rounds", "50", "--period", "1")
    assert result.returncode == 0, result.stderr
    records = [item for _, item in read_lines(path.read_text().splitlines())]
    assert all(not isinstance(r, Exception) for r in records)
    assert len(records) == 50 * 6 - 10  # the cow tag is away for rounds 40..49
    # the matching demo bus decodes every advert (no decode errors, nothing ignored)
    bus_toml = demo._replay(tmp_path)
    cfg = config.parse(f'[gateway]\nid = "g"\n{bus_toml}')
    router = Router(cfg.buses[0].devices, 0.0)
    emissions = []
    for i, (t, advert) in enumerate(records):  # type: ignore[misc]
        emissions += [a for a in router.advert(advert, t, float(i)) if isinstance(a, Emission)]
    assert router.counters.decode_errors == 0 and router.counters.ignored == 0
    sealed = [e for e in emissions if e.device == "greenhouse-sealed"]
    assert sealed and {o.quantity for o in sealed[0].observations} == {
        "battery",
        "temperature",
        "humidity",
    }
    assert tomllib.loads(bus_toml)["buses"][0]["transport"] == "ble-replay"


def test_field_rounds_are_new_measurements() -> None:
    field = Field()
    a, b = field.round(1), field.round(2)
    assert [x.address for x in a] == [x.address for x in b]
    assert all(x != y for x, y in zip(a[:5], b[:5], strict=True))
    assert SEALED in {x.address for x in a} and len(BINDKEY) == 32


def test_gateway_decode_accepts_ble_hex() -> None:
    result = _gateway("decode", "bthome", "40 02 CA 09 03 BF 13")
    assert result.returncode == 0
    assert result.stdout.strip() == (
        '[{"quantity": "temperature", "value": 25.06, "unit": "degC"}, '
        '{"quantity": "humidity", "value": 50.55, "unit": "%"}]'
    )
    wrong = _gateway(
        "decode", "bthome", "54:48:E6:8F:80:A5 41 A4 72 66 C9 5F 73 00 11 22 33 78 23 72 14",
        "-p", "bindkey=" + "0" * 32,
    )  # fmt: skip
    assert wrong.returncode == 1 and "wrong bindkey" in wrong.stderr


@pytest.mark.slow
def test_sim_runs_a_mocked_adapter_and_says_how_to_use_it(tmp_path: Path) -> None:
    workdir = tmp_path / "sim"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sim", "ble", "--seconds", "1.5", "--period", "0.2",
         "--workdir", str(workdir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 0, err
    assert f"export DBUS_SYSTEM_BUS_ADDRESS=unix:path={workdir}/system_bus_socket" in out
    bus = out.split("and this bus in its config:", 1)[1]
    cfg = config.parse(f'[gateway]\nid = "g"\n{bus}')
    assert cfg.buses[0].transport == "ble"
    assert [d.options.gatt for d in cfg.buses[0].devices][-1] == "notify"
