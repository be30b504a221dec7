"""Serial bus and device keys: bad values give path-qualified errors through gateway.config."""

from __future__ import annotations

import pytest

from drivers.serial.options import BusOptions, DeviceOptions, PortMatch, PortSettings
from gateway.config import loader as config
from gateway.errors import ConfigError
from gateway.hotplug import DeviceInfo


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse('[gateway]\nid = "t"\n' + text)
    return [str(p) for p in info.value.problems]


def test_bad_bus_keys() -> None:
    assert problems(
        """
[[buses]]
name = "a"
transport = "serial"
baud = 9600
parity = "X"
stopbits = 3
max_line = 4
encoding = "utf8"
reconnect_min = 10.0
reconnect_max = 5.0
"""
    ) == [
        "buses[0]: needs exactly one of `port` (a device path) or `match` (a udev match)",
        'buses[0].parity: expected one of N, E, O, M, S; got "X"',
        "buses[0].stopbits: expected 1, 1.5 or 2, got 3",
        "buses[0].max_line: expected 16..65536, got 4",
        "buses[0].encoding: expected one of ascii, utf-8, latin-1; "
        'got "utf8" (did you mean "utf-8"?)',
        "buses[0].reconnect_max: must be >= reconnect_min (10.0), got 5.0",
        'buses[0].baud: unknown key (did you mean "baudrate"?)',
    ]


def test_port_and_match_exclude_each_other_and_match_keys_are_checked() -> None:
    assert problems(
        """
[[buses]]
name = "a"
transport = "serial"
port = "/dev/ttyUSB0"
match = { vid = "FTDI", seriall = "x" }
"""
    ) == [
        'buses[0].match.vid: expected 4 hex digits as udev shows them (e.g. "0403"), got "FTDI"',
        'buses[0].match.seriall: unknown key (did you mean "serial"?)',
        "buses[0]: needs exactly one of `port` (a device path) or `match` (a udev match)",
    ]
    assert problems('[[buses]]\nname = "a"\ntransport = "serial"\nmatch = {}\n') == [
        "buses[0].match: needs at least one of vid, pid, serial, usb_path"
    ]


def test_bad_device_keys() -> None:
    assert problems(
        """
[[buses]]
name = "a"
transport = "serial"
port = "/dev/gateway/buoy"
[[buses.devices]]
id = "d"
talkers = ["W"]
silense = 3
[[buses.devices]]
id = "e"
profile = "buoy-nmea"
silence = -1
[[buses.devices]]
id = "f"
profile = "no-such-profile"
"""
    )[:4] == [
        "buses[0].devices[0].profile: a serial device needs a profile (nmea or line protocol)",
        'buses[0].devices[0].talkers[0]: expected a 2-letter talker id such as "WI", got "W"',
        'buses[0].devices[0].silense: unknown key (did you mean "silence"?)',
        "buses[0].devices[1].silence: expected 0.0..86400.0, got -1",
    ]


def test_good_config_gives_frozen_options() -> None:
    cfg = config.parse(
        """
[gateway]
id = "t"
[[buses]]
name = "buoy"
transport = "serial"
match = { vid = "0403", pid = "6001", serial = "A1" }
baudrate = 9600
parity = "E"
[[buses.devices]]
id = "buoy-1"
profile = "buoy-nmea"
talkers = ["WI", "IN"]
silence = 120
"""
    )
    bus = cfg.buses[0]
    assert bus.options == BusOptions(
        match=PortMatch(vid="0403", pid="6001", serial="A1"),
        settings=PortSettings(baudrate=9600, parity="E"),
    )
    assert bus.devices[0].options == DeviceOptions(talkers=frozenset({"WI", "IN"}), silence=120.0)
    assert bus.devices[0].decoder is not None
    assert bus.options.match.matches(
        DeviceInfo("/dev/ttyUSB3", vid="0403", pid="6001", serial="A1")
    )
    assert not bus.options.match.matches(DeviceInfo("/dev/ttyUSB3", vid="0403", pid="6001"))


def test_udev_rules_name_tty_nodes_under_dev_gateway() -> None:
    import re
    from pathlib import Path

    rules = Path(__file__).resolve().parent.parent / "systemd" / "99-gateway-serial.rules"
    lines = [
        line
        for line in rules.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) >= 2
    names = []
    for line in lines:
        pairs = [p.strip() for p in line.split(",")]
        assert pairs[0] == 'SUBSYSTEM=="tty"', line
        for pair in pairs:
            assert re.fullmatch(r'[A-Z]+(\{\w+\})?(==|\+=|=)"[^"]*"', pair), pair
        vid = re.search(r'ATTRS\{idVendor\}=="([^"]*)"', line)
        assert vid and re.fullmatch(r"[0-9a-f]{4}", vid.group(1)), line
        link = re.search(r'SYMLINK\+="gateway/([^"]+)"', line)
        assert link, line
        names.append(link.group(1))
    assert len(names) == len(set(names))  # two adapters must not fight over one name


def test_a_profile_of_another_protocol_is_a_config_error() -> None:
    """Config parsing guarantees a serial bus only gets nmea / line decoders (the bus trusts
    it), and that every serial device has a profile."""
    assert problems(
        """
[[buses]]
name = "a"
transport = "serial"
port = "/dev/ttyUSB0"
[[buses.devices]]
id = "wind"
profile = "sn3000-anemometer"
[[buses.devices]]
id = "bare"
"""
    ) == [
        'buses[0].devices[0].profile: "sn3000-anemometer" is a modbus profile; '
        'transport "serial" decodes nmea, line',
        "buses[0].devices[1].profile: a serial device needs a profile (nmea or line protocol)",
    ]
