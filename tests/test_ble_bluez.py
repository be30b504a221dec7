"""bleak's real BlueZ backend against a mocked BlueZ (python3-dbusmock) on a private D-Bus.

Needs the Debian packages `dbus` and `python3-dbusmock`; without them these tests FAIL with
MockUnavailable naming the package (they never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from drivers.ble import bthome, create_bus
from drivers.ble.advert import uuid16
from drivers.ble.mockbluez import MockBlueZ
from gateway.config import loader as config
from gateway.contract import BusContext
from tests.configs import load_config
from tests.fakes import RecordingSink

KEY = "231d39c1d7cc1ab1aee224cd096db932"
T1 = "A4:C1:38:00:00:01"
ENC = "54:48:E6:8F:80:A5"
RUUVI = "CB:B8:33:4C:88:4F"
WIND = "F0:0D:00:00:00:01"
STRANGER = "11:22:33:44:55:66"
RUUVI_DF5 = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def info(self, event: str, **kw: object) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: object) -> None:
        self.lines.append(("warning", event, kw))

    def events(self, name: str) -> list[dict]:
        return [kw for _, event, kw in self.lines if event == name]


@pytest.fixture
async def bluez(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockBlueZ]:
    # a short directory: unix socket paths are limited to 108 bytes
    workdir = Path(tempfile.mkdtemp(prefix="bz-"))
    try:
        async with MockBlueZ(workdir) as bz:
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bz.address)
            yield bz
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        # dbus-fast can leave a failed write future behind when the bus dies under it; have
        # it reported now rather than by a later, random garbage collection (on 3.11 that
        # report can land inside the next module's ast.parse and break it)
        gc.collect()


def _bus(extra_bus: str = "", devices: str = ""):
    text = load_config(
        "ble_bluez", t1=T1, enc=ENC, key=KEY, ruuvi=RUUVI, bus=extra_bus, devices=devices
    )
    return config.parse(text).buses[0]


@contextlib.asynccontextmanager
async def running(bus_config, sink: RecordingSink, log: RecordingLog) -> AsyncIterator[object]:
    bus = create_bus(bus_config, BusContext(sink=sink, log=log))
    task = asyncio.create_task(bus.run())
    try:
        yield bus
    finally:
        task.cancel()
        # a bus that swallowed its cancellation would hang here: fail instead
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done, "the bus task did not stop when cancelled"


async def until(
    check: Callable[[], bool], act: Callable[[], Awaitable[object]], budget: float = 15
) -> None:
    """Repeat `act` (an advert, say) until `check` holds; fail after `budget` seconds."""

    async def loop() -> None:
        while not check():
            await act()
            await asyncio.sleep(0.05)

    async with asyncio.timeout(budget):
        await loop()


async def _pause() -> None:
    await asyncio.sleep(0)


def _bt(hexdata: str) -> dict[str, bytes]:
    return {uuid16(0xFCD2): bytes.fromhex(hexdata)}


async def test_passive_scan_delivers_decoded_readings(bluez: MockBlueZ) -> None:
    await bluez.add_adapter("hci0", passive=True)
    sink, log = RecordingSink(), RecordingLog()
    encrypted = bthome.encrypt(bytes.fromhex("02CA0903BF13"), bytes.fromhex(KEY), ENC, 1)
    async with running(_bus(), sink, log) as bus:
        await until(
            lambda: bool(sink.values("t1", "temperature")),
            lambda: bluez.advertise("hci0", T1, -60, service=_bt("40000102CA09")),
        )
        # the same packet again (only RSSI changed) is dropped; a new packet id passes
        assert await bluez.advertise("hci0", T1, -70, service=_bt("40000102CA09"))
        assert await bluez.advertise("hci0", STRANGER, -50, service=_bt("40000102CA09"))
        assert await bluez.advertise("hci0", T1, -61, service=_bt("40000202D209"))
        assert await bluez.advertise("hci0", ENC, -65, service={uuid16(0xFCD2): encrypted})
        assert await bluez.advertise("hci0", RUUVI, -80, manufacturer={0x0499: RUUVI_DF5})
        await sink.wait_for(lambda s: len(s.emitted) >= 4)
        assert sink.values("t1", "temperature") == [25.06, 25.14]
        assert sink.values("enc", "humidity") == [50.55]
        assert sink.values("ruuvi", "pressure") == [1000.44]
        assert {e.device for e in sink.emitted} == {"t1", "enc", "ruuvi"}
        assert bus.source.mode == "passive"
        assert bus.router.counters.duplicates >= 1
        assert bus.router.counters.ignored >= 1


async def test_falls_back_to_active_scanning_without_monitor_support(bluez: MockBlueZ) -> None:
    await bluez.add_adapter("hci0", passive=False)
    sink, log = RecordingSink(), RecordingLog()
    async with running(_bus(), sink, log) as bus:
        await until(
            lambda: bool(sink.values("t1", "temperature")),
            lambda: bluez.advertise("hci0", T1, -60, service=_bt("4002CA09")),
        )
        assert bus.source.mode == "active"
        fallback = log.events("passive scanning unavailable, scanning actively")
        assert len(fallback) == 1 and "BlueZ >= 5.56" in str(fallback[0]["reason"])


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_adapter_off_then_on_is_logged_once_each_way(bluez: MockBlueZ) -> None:
    await bluez.add_adapter("hci0", passive=True)
    sink, log = RecordingSink(), RecordingLog()
    counter = iter(range(1, 255))

    async def advert() -> object:
        return await bluez.advertise("hci0", T1, -60, service=_bt(f"4000{next(counter):02x}02CA09"))

    async with running(_bus(), sink, log) as bus:
        await until(lambda: len(sink.emitted) >= 1, advert)
        await bluez.set_powered("hci0", False)
        await until(lambda: bool(log.events("adapter hci0 down")), _pause, budget=10)
        await asyncio.sleep(0.5)  # several failed restarts while off...
        assert len(log.events("adapter hci0 down")) == 1  # ...but one log line
        assert "powered off" in log.events("adapter hci0 down")[0]["reason"]
        before = len(sink.emitted)
        await bluez.set_powered("hci0", True)
        await until(lambda: len(sink.emitted) > before, advert)
        assert len(log.events("adapter hci0 recovered")) == 1
        assert bus.source.starts >= 2


@pytest.mark.slow
async def test_bluetoothd_restart_and_dbus_loss_recover(bluez: MockBlueZ) -> None:
    await bluez.add_adapter("hci0", passive=True)
    sink, log = RecordingSink(), RecordingLog()
    counter = iter(range(1, 255))

    async def advert() -> object:
        return await bluez.advertise("hci0", T1, -60, service=_bt(f"4000{next(counter):02x}02CA09"))

    async with running(_bus(), sink, log):
        await until(lambda: len(sink.emitted) >= 1, advert)
        # bluetoothd restarts: the new instance has no monitors and a new bus name owner
        await bluez.stop_bluez()
        await until(lambda: bool(log.events("adapter hci0 down")), _pause, budget=10)
        await bluez.start_bluez()
        before = len(sink.emitted)
        await until(lambda: len(sink.emitted) > before, advert)
        assert len(log.events("adapter hci0 recovered")) == 1
        # the whole system bus goes away and comes back
        await bluez.stop_bluez()
        await bluez.stop_dbus()
        await until(lambda: len(log.events("adapter hci0 down")) >= 2, _pause, budget=10)
        await asyncio.sleep(0.5)
        assert len(log.events("adapter hci0 down")) == 2
        await bluez.start_dbus()
        await bluez.start_bluez()
        before = len(sink.emitted)
        await until(lambda: len(sink.emitted) > before, advert, budget=20)
        assert len(log.events("adapter hci0 recovered")) == 2
    reasons = [kw["reason"] for kw in log.events("adapter hci0 down")]
    assert any("bluetoothd" in r or "BlueZ" in r for r in reasons[:1]), reasons


async def test_gatt_notify_read_and_reconnect(bluez: MockBlueZ) -> None:
    await bluez.add_adapter("hci0", passive=True)
    await bluez.add_gatt_sensor(
        "hci0",
        WIND,
        {
            0x2A70: bytes.fromhex("f301"),
            0x2A71: bytes.fromhex("5046"),
            0x2A6E: bytes.fromhex("ca09"),
        },
    )
    devices = f"""
[[buses.devices]]
id = "wind"
profile = "ess-wind"
address = "{WIND}"
gatt = "notify"
interval = 0
"""
    sink, log = RecordingSink(), RecordingLog()
    ess_uuids = {uuid16(0x181A): b""}  # advertises the ESS service so passive scans see it

    async def advert() -> object:
        return await bluez.advertise("hci0", WIND, -55, service=ess_uuids)

    async with running(_bus(devices=devices), sink, log) as bus:
        # connect + initial read of every characteristic the profile lists
        await until(lambda: bool(sink.values("wind", "wind_speed")), advert)
        first = next(e for e in sink.emitted if e.device == "wind")
        assert {o.quantity: o.value for o in first.observations} == {
            "wind_speed": 4.99,
            "wind_direction": 180.0,
            "temperature": 25.06,
        }
        # a notification
        assert await bluez.set_characteristic("hci0", WIND, 0x2A70, bytes.fromhex("e803"))
        await sink.wait_for(lambda s: 10.0 in s.values("wind", "wind_speed"))
        # the sensor drops the link: one state change down, then a reconnect and fresh reads
        await bluez.drop_connection("hci0", WIND)
        await sink.wait_for(lambda s: ("wind", False, "connection dropped") in s.states)
        # reconnected, read and re-subscribed: reported back once
        await until(lambda: ("wind", True, "") in sink.states, advert)
        assert bus.sessions[0].connects == 2
        assert await bluez.set_characteristic("hci0", WIND, 0x2A71, bytes.fromhex("1027"))
        await sink.wait_for(lambda s: 100.0 in s.values("wind", "wind_direction"))
        assert [s for s in sink.states if s[0] == "wind" and not s[1]] == [
            ("wind", False, "connection dropped")
        ]


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_gatt_read_mode_polls_and_disconnects(bluez: MockBlueZ) -> None:
    await bluez.add_adapter("hci0", passive=True)
    await bluez.add_gatt_sensor(
        "hci0", WIND, {0x2A6E: bytes.fromhex("ca09"), 0x2A6F: bytes.fromhex("bf13")}
    )
    devices = f"""
[[buses.devices]]
id = "ess1"
profile = "ess"
address = "{WIND}"
gatt = "read"
interval = 1
"""
    sink, log = RecordingSink(), RecordingLog()

    async def advert() -> object:
        return await bluez.advertise("hci0", WIND, -55, service={uuid16(0x181A): b""})

    async with running(_bus(devices=devices), sink, log) as bus:
        await until(lambda: bool(sink.values("ess1", "temperature")), advert)
        assert sink.values("ess1", "humidity") == [50.55]
        # not subscribed: a new value is not notified, the next poll reads it
        assert not await bluez.set_characteristic("hci0", WIND, 0x2A6E, bytes.fromhex("0000"))
        await sink.wait_for(lambda s: 0.0 in s.values("ess1", "temperature"), timeout=10)
        assert bus.sessions[0].connects >= 2


def test_missing_tools_fail_loudly_naming_the_package(tmp_path: Path) -> None:
    from drivers.ble.mockbluez import MockUnavailable, check_tools

    with pytest.raises(MockUnavailable, match="python3-dbusmock"):
        check_tools(python=str(tmp_path / "no-python"))
    with pytest.raises(MockUnavailable, match="python3-dbusmock"):
        check_tools(python="/bin/false")


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_silence_restarts_the_scan(bluez: MockBlueZ) -> None:
    # a wedged controller hears nothing: after silence_timeout the scan is restarted
    await bluez.add_adapter("hci0", passive=True)
    sink, log = RecordingSink(), RecordingLog()
    async with running(_bus("silence_timeout = 0.4"), sink, log) as bus:
        await until(lambda: bus.source.starts >= 2, _pause, budget=10)
        down = log.events("adapter hci0 down")
        assert down and down[0]["reason"].startswith("no advertisements for")
        # and adverts are heard again after the restart
        await until(
            lambda: bool(sink.values("t1", "temperature")),
            lambda: bluez.advertise("hci0", T1, -60, service=_bt("4002CA09")),
        )
