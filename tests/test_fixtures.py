"""Every config fixture in tests/fixtures/ is a valid gateway config once its placeholders are
filled in, and the loader refuses a missing or misspelt placeholder."""

from __future__ import annotations

import pytest

from gateway.config import loader as config
from gateway.config.loader import Config
from tests.configs import fixture_names, load_config, placeholders

# A plausible value for every placeholder name the fixtures use. TOML snippets default to
# nothing: the fixture must be a whole config without them.
SAMPLES: dict[str, object] = {
    "port": 1883,
    "uplink_port": 1883,
    "smtp_port": 2525,
    "sim_host": "127.0.0.1",
    "sim_port": 5020,
    "tmp": "/tmp/gateway-fixture",
    "work": "/tmp/gateway-fixture",
    "store": "/tmp/gateway-fixture/outbox.sqlite",
    "tty": "/dev/pts/99",
    "file": "/tmp/gateway-fixture/replay.txt",
    "window": 0.2,
    "reconnect_min": 0.05,
    "reconnect_max": 0.1,
    "trap_lat": 36.115012,
    "trap_lon": 137.954321,
    "trap_values": '["set", "triggered"]',
    "t1": "A4:C1:38:00:00:01",
    "t2": "A4:C1:38:00:00:02",
    "enc": "54:48:E6:8F:80:A5",
    "ruuvi": "CB:B8:33:4C:88:4F",
    "tag": "C0:FF:EE:00:00:01",
    "address": "A4:C1:38:00:00:01",
    "key": "231d39c1d7cc1ab1aee224cd096db932",
    "adapter": "hci0",
    "profile": "bthome",
    "transport": "ble-replay",
    "replicas": 3,
    "interval": 0.5,
    "count": 0,
    "points": '{ quantity = "q0", unit = "u", pattern = "counter" }',
    "bus": "",
    "buses": "",
    "devices": "",
    "device": "",
    "extra": "",
    "smtp": "",
}

# Where a fixture's own placeholders need other samples than the ones above (its text is a
# shell the caller fills in, or it is one part of a bigger config).
OVERRIDES: dict[str, dict[str, object]] = {
    "ble_router": {"file": 'file = "/tmp/gateway-fixture/replay.txt"'},
    "serial_bus": {
        "port": 'port = "/dev/pts/99"',
        "devices": '[[buses.devices]]\nid = "buoy"\nprofile = "buoy-nmea"',
    },
    "modbus_device": {
        "bus": 'transport = "modbus-tcp"\nhost = "127.0.0.1"',
        "device": 'profile = "urm14"\nunit = 1',
    },
    "bench_modbus": {"devices": '[[buses.devices]]\nid = "d1"\nprofile = "urm14"\nunit = 1'},
    "bench_core": {"buses": '[[buses]]\nname = "b"\ntransport = "synthetic"'},
    # bench_synthetic is the [[buses]] part of bench_core: parsed inside it
    "bench_synthetic": {"_wrap": "bench_core"},
}


def _filled(name: str) -> str:
    overrides = dict(OVERRIDES.get(name, {}))
    wrap = overrides.pop("_wrap", None)
    values = {key: overrides.get(key, SAMPLES[key]) for key in placeholders(name)}
    text = load_config(name, **values)
    if wrap is not None:
        outer = {key: SAMPLES[key] for key in placeholders(str(wrap)) if key != "buses"}
        text = load_config(str(wrap), buses=text, **outer)
    return text


def test_there_are_fixtures_and_every_placeholder_has_a_sample() -> None:
    assert len(fixture_names()) >= 10
    unsampled = {
        (name, key)
        for name in fixture_names()
        for key in placeholders(name)
        if key not in SAMPLES and key not in OVERRIDES.get(name, {})
    }
    assert not unsampled, f"add a sample value to SAMPLES for {sorted(unsampled)}"
    assert set(OVERRIDES) <= set(fixture_names()), "OVERRIDES names a fixture that is gone"


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_parses_after_substitution(name: str) -> None:
    text = _filled(name)
    assert "$" not in text.replace("$$", "")
    cfg = config.parse(text, f"{name}.toml")
    assert isinstance(cfg, Config)
    assert cfg.buses, f"{name}.toml configures no bus"


def test_values_land_where_the_placeholders_are() -> None:
    text = load_config(
        "daemon",
        port=18830,
        tmp="/tmp/fixture-x",
        window=7.5,
        devices='[[buses.devices]]\nid = "extra"\npoints = [{quantity="m",pattern="counter"}]',
    )
    cfg = config.parse(text)
    assert cfg.uplink.port == 18830
    assert cfg.uplink.batch_window == 7.5
    assert str(cfg.store.path) == "/tmp/fixture-x/outbox.sqlite"
    assert [d.id for d in cfg.buses[0].devices] == ["counter", "extra"]


def test_a_missing_or_unknown_value_is_refused_by_name() -> None:
    values = {key: SAMPLES[key] for key in placeholders("daemon")}
    del values["port"]
    with pytest.raises(TypeError, match=r"daemon\.toml: missing values \['port'\]"):
        load_config("daemon", **values)
    with pytest.raises(TypeError, match=r"no placeholder for \['prot'\]"):
        load_config("daemon", prot=1, **{k: SAMPLES[k] for k in placeholders("daemon")})
    with pytest.raises(FileNotFoundError, match="no config fixture 'nope'; known: alert_daemon"):
        load_config("nope")
