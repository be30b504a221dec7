"""Serial bus on pseudo-terminal pairs driven by the simulators: decoding, faults, unplug,
hotplug events, de-duplication, silence, sampling; and one real kernel uevent."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from drivers.serial.nmea import NmeaDecoder
from drivers.serial.ptyline import pty_line
from drivers.serial.sim import BuoyTalker, Faults, TrapReceiver, sentence, trap_line
from gateway.hotplug import DeviceEvent, DeviceInfo, Hotplug, open_udev
from tests.serial_rig import BUOY, TRAPS, available, bus_toml, running_bus, until_available


def crlf(*lines: str) -> bytes:
    return b"".join(line.encode() + b"\r\n" for line in lines)


async def test_buoy_talker_end_to_end(tmp_path: Path) -> None:
    talker = BuoyTalker(seed=3)
    sent = [s for _ in range(3) for s in talker.sentences()]
    expected: dict[str, list[object]] = {}
    for s in sent:
        for o in NmeaDecoder().decode(s, {}):
            expected.setdefault(o.quantity, []).append(o.value)
    assert {"wind_speed", "wind_speed_relative", "water_temperature", "latitude"} <= set(expected)
    async with pty_line(tmp_path / "buoy") as line, running_bus(bus_toml(line.port, BUOY)) as r:
        await until_available(r.sink, "buoy-1")
        await line.write(crlf(*sent))
        await r.sink.wait_for(lambda s: len(s.values("buoy-1", "water_temperature")) == 3, 5)
        for quantity, want in expected.items():
            assert r.sink.values("buoy-1", quantity) == want, quantity
        stats = r.bus.stats()
        assert stats["lines"] == len(sent)
        assert stats["decoded"] == len(sent)  # the GSV sentences are ignored, not errors


async def test_faults_do_not_lose_the_good_lines_around_them(tmp_path: Path) -> None:
    faults = Faults(garbage=0.4, bad_checksum=0.0, overlong=0.3)
    rng = random.Random(7)
    good = [sentence(f"INMTW,{10 + i / 10:.1f},C") for i in range(40)]
    broken = "$IIMWV,199,R,5.9,N,A*2F"  # FIELD.md sentence with its checksum broken
    async with pty_line(tmp_path / "buoy") as line, running_bus(bus_toml(line.port, BUOY)) as r:
        await until_available(r.sink, "buoy-1")
        for i, s in enumerate(good):
            await line.write(faults.frame(s, rng))
            if i % 5 == 0:
                await line.write(crlf(broken))
        await r.sink.wait_for(lambda s: len(s.values("buoy-1", "water_temperature")) == 40)
        assert r.sink.values("buoy-1", "water_temperature") == [
            round(10 + i / 10, 1) for i in range(40)
        ]
        assert r.sink.values("buoy-1", "wind_speed_relative") == []
        stats = r.bus.stats()
        assert stats["bad_checksum"] == 8
        assert stats["overlong"] >= 5
        assert stats["decoded"] == 40


async def test_garbage_between_lines_is_counted_by_kind(tmp_path: Path) -> None:
    async with pty_line() as line, running_bus(bus_toml(line.port, BUOY, "max_line = 64")) as r:
        await until_available(r.sink, "buoy-1")
        await line.write(
            b"\xff\xfe\x00\r\n"  # undecodable
            + b"hello there\r\n"  # matches no profile
            + b"$"
            + b"9" * 100
            + b"\r\n"  # overlong for max_line = 64
            + crlf("$INMTW,17.9,C*1B")
        )
        await r.sink.wait_for(lambda s: s.values("buoy-1", "water_temperature") == [17.9])
        stats = r.bus.stats()
        assert (stats["undecodable"], stats["unmatched"], stats["overlong"]) == (1, 1, 1)


async def test_unplug_and_replug_recover(tmp_path: Path) -> None:
    async with pty_line(tmp_path / "buoy") as line, running_bus(bus_toml(line.port, BUOY)) as r:
        await until_available(r.sink, "buoy-1")
        await line.write(crlf("$INMTW,17.9,C*1B"))
        await r.sink.wait_for(lambda s: s.values("buoy-1", "water_temperature") == [17.9])
        first = line.path
        line.unplug()
        await until_available(r.sink, "buoy-1", False)
        assert "hung up" in r.sink.states[-1][2] or "I/O error" in r.sink.states[-1][2]
        line.replug()
        await until_available(r.sink, "buoy-1", True)
        await line.write(crlf(sentence("INMTW,18.2,C")))
        await r.sink.wait_for(lambda s: s.values("buoy-1", "water_temperature") == [17.9, 18.2])
        assert r.bus.stats()["connects"] == 2
        assert r.bus.health.transitions == 2  # down once, recovered once
        assert first  # the new pair may reuse the number; the link is what is configured


@pytest.mark.parametrize("settle", [0.0, 0.05])
async def test_hotplug_add_wakes_the_reconnect_at_once(tmp_path: Path, settle: float) -> None:
    hotplug = Hotplug(settle=settle)  # a kernel-source hub waits for udev to settle first
    async with pty_line(tmp_path / "buoy") as line:
        # A 30 s backoff: only the add event can bring it back within the 10 s budget.
        text = bus_toml(line.port, BUOY, backoff=30.0)
        async with running_bus(text, hotplug=hotplug) as r:
            await until_available(r.sink, "buoy-1")
            line.unplug()
            await until_available(r.sink, "buoy-1", False)
            line.replug()
            hotplug.plug(DeviceInfo(devnode="/dev/ttyUSB7"))  # someone else's adapter
            await asyncio.sleep(0.2)
            assert available(r.sink, "buoy-1") is False
            hotplug.plug(DeviceInfo(devnode=line.path))
            await until_available(r.sink, "buoy-1", True)
            await line.write(crlf("$INMTW,17.9,C*1B"))
            await r.sink.wait_for(lambda s: s.values("buoy-1", "water_temperature") == [17.9])


async def test_hotplug_remove_marks_devices_unavailable_immediately(tmp_path: Path) -> None:
    hotplug = Hotplug()
    async with (
        pty_line(tmp_path / "buoy") as line,
        running_bus(bus_toml(line.port, BUOY, backoff=30.0), hotplug) as r,
    ):
        await until_available(r.sink, "buoy-1")
        # The pty stays open, so nothing but the event can tell the bus.
        hotplug.unplug(DeviceInfo(devnode=line.path))
        await until_available(r.sink, "buoy-1", False)
        assert r.sink.states[-1] == ("buoy-1", False, f"adapter removed ({line.path})")
        hotplug.plug(DeviceInfo(devnode=line.path))
        await until_available(r.sink, "buoy-1", True)


async def test_udev_match_is_resolved_at_connect_and_follows_renumbering() -> None:
    hotplug = Hotplug()
    match = 'match = { vid = "0403", pid = "6001", serial = "BUOY1" }'
    async with pty_line() as line, pty_line() as other:
        ours = DeviceInfo(
            devnode=line.path,
            devpath="/devices/usb1/1-1.2/ttyUSB0",
            vid="0403",
            pid="6001",
            serial="BUOY1",
            usb_path="1-1.2",
        )
        hotplug.plug(DeviceInfo(devnode=other.path, vid="0403", pid="6001", serial="OTHER"))
        hotplug.plug(ours)
        async with running_bus(bus_toml("", BUOY, match, backoff=30.0), hotplug) as r:
            await until_available(r.sink, "buoy-1")
            await other.write(crlf(sentence("INMTW,1.0,C")))
            await line.write(crlf(sentence("INMTW,2.0,C")))
            await r.sink.wait_for(lambda s: s.values("buoy-1", "water_temperature") == [2.0])
            # Unplug, and the adapter comes back under another node (ttyUSB0 -> ttyUSB1).
            hotplug.unplug(ours)
            await until_available(r.sink, "buoy-1", False)
            line.unplug()
            line.replug()
            hotplug.plug(
                DeviceInfo(
                    devnode=line.path,
                    devpath="/devices/usb1/1-1.2/ttyUSB1",
                    vid="0403",
                    pid="6001",
                    serial="BUOY1",
                )
            )
            await until_available(r.sink, "buoy-1", True)
            await line.write(crlf(sentence("INMTW,3.0,C")))
            await r.sink.wait_for(lambda s: s.values("buoy-1", "water_temperature") == [2.0, 3.0])


async def test_trap_resends_are_deduplicated_and_heartbeats_emitted(tmp_path: Path) -> None:
    receiver = TrapReceiver(["17", "18"], seed=2)
    radio = Faults(repeats=3)  # each message arrives three times
    rng = random.Random(1)
    async with pty_line() as line, running_bus(bus_toml(line.port, TRAPS)) as r:
        await until_available(r.sink, "rx")
        await line.write(radio.frame(receiver.message("17", "TRIG"), rng))
        for hb in receiver.heartbeats():
            await line.write(radio.frame(hb, rng))
        await line.write(radio.frame(receiver.message("17", "SET"), rng))
        await r.sink.wait_for(lambda s: s.values("rx-17", "trap_state") == ["triggered", "set"])
        await r.sink.wait_for(lambda s: len(s.values("rx-18", "rssi")) == 1)
        assert len(r.sink.values("rx-17", "rssi")) == 3  # TRIG, heartbeat, SET
        assert r.sink.values("rx-18", "trap_state") == []  # a heartbeat has no state
        assert r.bus.stats()["duplicates"] == 8
        # Trap readings are emitted by their receiver, each observation naming its trap.
        assert {e.device for e in r.sink.emitted} == {"rx"}
        assert r.sink.parents("rx-17") == r.sink.parents("rx-18") == {"rx"}


async def test_set_trig_set_trig_through_a_pty_is_four_events() -> None:
    """Two animals in a few seconds: SET, TRIG, SET, TRIG, each sent three times by the radio.
    Every change of state reaches the sink; only the back-to-back copies are dropped."""
    receiver = TrapReceiver(["17"], seed=4)
    radio = Faults(repeats=3)
    rng = random.Random(1)
    async with pty_line() as line, running_bus(bus_toml(line.port, TRAPS)) as r:
        await until_available(r.sink, "rx")
        for state in ("SET", "TRIG", "SET", "TRIG"):
            await line.write(radio.frame(receiver.message("17", state), rng))
        want = ["set", "triggered", "set", "triggered"]
        await r.sink.wait_for(lambda s: s.values("rx-17", "trap_state") == want)
        assert r.bus.stats()["duplicates"] == 8


async def test_silence_marks_the_device_unavailable_until_it_speaks() -> None:
    device = BUOY + "silence = 0.3\n"
    async with pty_line() as line, running_bus(bus_toml(line.port, device)) as r:
        await until_available(r.sink, "buoy-1", True)
        await until_available(r.sink, "buoy-1", False)
        assert r.sink.states[-1] == ("buoy-1", False, "no data for 0.3 s")
        await line.write(crlf("$INMTW,17.9,C*1B"))
        await until_available(r.sink, "buoy-1", True)
        assert r.bus.stats()["connects"] == 1  # silence is not a reason to reopen


async def test_interval_averages_a_chatty_talker() -> None:
    device = BUOY.replace("interval = 0", "interval = 0.3")
    async with pty_line() as line, running_bus(bus_toml(line.port, device)) as r:
        await until_available(r.sink, "buoy-1")
        await line.write(
            crlf(*(sentence(f"WIMWV,{d},T,{v},M,A") for d, v in ((350, 4.0), (10, 5.0), (0, 6.0))))
        )
        await r.sink.wait_for(lambda s: s.values("buoy-1", "wind_speed") != [])
        assert r.sink.values("buoy-1", "wind_speed") == [5.0]
        assert r.sink.values("buoy-1", "wind_direction") == [0.0]


async def test_a_missing_port_is_retried_quietly_and_never_raises() -> None:
    async with running_bus(bus_toml("/dev/does-not-exist", BUOY)) as r:
        await asyncio.sleep(0.4)
        assert r.bus.stats().get("connects", 0) == 0
        assert r.bus.health.down_reason == (
            "port /dev/does-not-exist does not exist (adapter unplugged?)"
        )
        assert r.bus.health.transitions == 1  # logged once, however many retries
        reason = "port /dev/does-not-exist does not exist (adapter unplugged?)"
        assert r.sink.states == [("buoy-1", False, reason)]  # reported down once


def _writable_tty() -> str:
    for name in ("tty9", "tty8", "tty1", "ttyS0"):
        if Path(f"/sys/class/tty/{name}/uevent").exists():
            return name
    raise AssertionError("no /sys/class/tty/*/uevent to trigger here")


def _trigger_uevent(name: str) -> None:
    # What `echo change > /sys/class/tty/<tty>/uevent` does; fails loudly if /sys is read-only.
    Path(f"/sys/class/tty/{name}/uevent").write_text("change")


async def test_kernel_uevent_reaches_a_pyudev_monitor() -> None:
    """Real netlink plumbing: `echo change > /sys/class/tty/<tty>/uevent` is seen."""
    name = _writable_tty()
    seen: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    async with open_udev(("tty",), source="kernel") as hotplug:
        assert hotplug.settle > 0  # kernel events arrive before udev rules have run
        with hotplug.subscribe(seen.put_nowait):
            _trigger_uevent(name)
            while True:
                event = await asyncio.wait_for(seen.get(), 5)
                if event.device.devnode == f"/dev/{name}":
                    break
    assert event.action == "change"
    assert event.device.subsystem == "tty"
    assert any(d.devnode == f"/dev/{name}" for d in hotplug.devices("tty"))


@pytest.mark.parametrize("state", ["TRIG", "SET"])
def test_trap_line_helper_round_trips(state: str) -> None:
    assert trap_line("17", state).startswith(f"TRAP,17,{state},")


def test_hotplug_hub_keeps_its_table_and_stops_delivering_after_unsubscribe() -> None:
    hub = Hotplug()
    got: list[str] = []
    a = DeviceInfo("/dev/ttyUSB0", devpath="/devices/a/ttyUSB0", vid="0403")
    with hub.subscribe(lambda e: got.append(f"{e.action} {e.device.devnode}")):
        hub.plug(a)
        hub.publish(DeviceEvent("add", DeviceInfo("/dev/input0", subsystem="input")))
        assert hub.devices("tty") == [a]
        hub.unplug(a)
        assert hub.devices("tty") == []
    hub.plug(a)
    assert got == ["add /dev/ttyUSB0", "add /dev/input0", "remove /dev/ttyUSB0"]


async def test_stopping_the_bus_does_not_report_devices_down() -> None:
    async with pty_line() as line, running_bus(bus_toml(line.port, BUOY)) as r:
        await until_available(r.sink, "buoy-1")
    assert r.sink.states == [("buoy-1", True, "")]
