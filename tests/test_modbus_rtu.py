"""Modbus RTU on a pseudo-terminal null modem (socat), and the sim / scan command lines."""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import subprocess
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.modbus import create_bus, rtu, scan
from drivers.modbus.options import BusOptions
from drivers.modbus.sim import Simulator, SimUnit
from drivers.modbus.transport import Link
from tests.fakes import RecordingSink
from tests.test_modbus_tcp import bus_config, context, decoder, device, running, same, until

ROOT = Path(__file__).resolve().parent.parent


class NullModem:
    """Two linked pseudo-terminals at fixed paths, like a USB RS-485 adapter wired to a slave."""

    def __init__(self, where: Path) -> None:
        self.sim_end = str(where / "ttySIM")
        self.bus_end = str(where / "ttyBUS")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "socat",
                f"pty,raw,echo=0,link={self.sim_end}",
                f"pty,raw,echo=0,link={self.bus_end}",
            ],
            stderr=subprocess.DEVNULL,
        )
        for _ in range(500):
            if os.path.exists(self.sim_end) and os.path.exists(self.bus_end):
                return
            if self.proc.poll() is not None:
                break
            select.select([], [], [], 0.01)
        raise RuntimeError("socat did not create the pty pair (is socat installed?)")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[NullModem]:
    pair = NullModem(tmp_path)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


def rtu_keys(modem: NullModem, extra: str = "") -> str:
    return (
        f'transport = "modbus-rtu"\nport = "{modem.bus_end}"\nbaud = 9600\ntimeout = 0.2\n'
        f"retries = 1\nreconnect_min = 0.05\nreconnect_max = 0.2\n{extra}"
    )


def raw_port(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
    return fd


def exchange(fd: int, request: bytes, wait: float = 0.5) -> bytes:
    os.write(fd, request)
    data = b""
    while select.select([fd], [], [], wait)[0]:
        data += os.read(fd, 256)
        wait = 0.1  # the rest of a frame follows quickly
    return data


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_simulator_answers_the_field_md_wind_vane_frame_byte_exact(
    modem: NullModem,
) -> None:
    vane = SimUnit(decoder("sn3000-wind-vane"), registers={"holding": {0: 2, 1: 90}})
    async with Simulator({1: vane}, modem.sim_end) as sim:
        fd = raw_port(modem.bus_end)
        try:
            request = bytes.fromhex("01 03 00 00 00 02 C4 0B")
            answer = await asyncio.to_thread(exchange, fd, request)
            assert answer == bytes.fromhex("01 03 04 00 02 00 5A DB C8")
            # a request with a broken CRC is ignored, as a real slave does
            assert await asyncio.to_thread(exchange, fd, request[:-1] + b"\x00", 0.3) == b""
            # another unit's address: silence
            other = rtu.frame(9, bytes.fromhex("0300000002"))
            assert await asyncio.to_thread(exchange, fd, other, 0.3) == b""
            vane.faults.garbage = True
            garbled = await asyncio.to_thread(exchange, fd, request)
            assert garbled[:-2] == answer[:-2] and not rtu.crc_ok(garbled)
            vane.faults.garbage = False
            vane.faults.exception = 2
            refused = await asyncio.to_thread(exchange, fd, request)
            assert refused == rtu.frame(1, bytes([0x83, 0x02]))
        finally:
            os.close(fd)
    assert sim.requests == [(1, 3), (9, 3), (1, 3), (1, 3)]


async def test_profiles_decode_over_rtu(modem: NullModem) -> None:
    cases = [
        ("sn3000-wind-vane", "rtu:01 03 04 00 02 00 5A DB C8", ""),
        ("urm14", "holding:5=8300,6=251", "params = { mount_height = 1000.0 }"),
        ("pressure-level", "holding:3=2,4=5230", ""),
        ("relay-8ch", "coil:0=1,1=0,2=0,3=0,4=0,5=0,6=0,7=1", ""),
        ("sn3000-co2", "0x0258 0x00FA 0x01C2", ""),
    ]
    units = {
        i + 1: SimUnit(decoder(p), registers=decoder(p).parse_input(text))
        for i, (p, text, _) in enumerate(cases)
    }
    async with Simulator(units, modem.sim_end):
        sink = RecordingSink()
        cfg = bus_config(
            rtu_keys(modem),
            [device(f"d{i + 1}", p, i + 1, 0.3, extra) for i, (p, _, extra) in enumerate(cases)],
        )
        async with running(create_bus(cfg, context(sink))):
            await sink.wait_for(lambda s: len({e.device for e in s.emitted}) == len(cases))
    for i, (p, text, _) in enumerate(cases):
        want = decoder(p).decode(decoder(p).parse_input(text), {"mount_height": 1000.0})
        got = next(e.observations for e in sink.emitted if e.device == f"d{i + 1}")
        assert same(want, got), p
    assert sink.states == []


@pytest.mark.slow
async def test_dead_and_crc_garbage_units_on_rtu_cost_only_their_timeouts(
    modem: NullModem,
) -> None:
    units = {
        1: SimUnit(decoder("water-temperature")),
        2: SimUnit(decoder("water-temperature")),
        3: SimUnit(decoder("water-temperature")),
    }
    units[2].faults.silent = True
    units[3].faults.garbage = True  # every answer has a broken CRC
    async with Simulator(units, modem.sim_end) as sim:
        sink = RecordingSink()
        cfg = bus_config(
            rtu_keys(modem, "jitter = 0.0"),
            [device(f"t{u}", "water-temperature", u, 0.1) for u in (1, 2, 3)],
        )
        bus = create_bus(cfg, context(sink))
        async with running(bus):
            await sink.wait_for(lambda s: len(s.values("t1", "water_temperature")) >= 6, 20)
            units[3].faults.garbage = False
            await until(lambda: ("t3", True, "") in sink.states)
    assert [(d, ok) for d, ok, _ in sink.states] == [("t2", False), ("t3", False), ("t3", True)]
    stamps = [e.ts for e in sink.emitted if e.device == "t1"]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]  # type: ignore[operator]
    # two failing units x timeout 0.2 s x 2 attempts per cycle, plus the interval and slack
    assert max(gaps) < 0.1 + 2 * 0.4 + 1.0, gaps
    assert sim.max_inflight == 1
    assert bus.counters["NoResponse"] >= 4  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("settle", ["settle = 0.0", ""], ids=["stray-retry", "default-settle"])
async def test_a_late_answer_from_a_slow_unit_does_not_fail_the_next_unit(
    modem: NullModem, settle: str
) -> None:
    """A slave answering after the timeout must not take the next unit's answer slot."""
    units = {1: SimUnit(decoder("sn3000-anemometer")), 2: SimUnit(decoder("sn3000-anemometer"))}
    units[2].faults.delay = 0.3  # later than the 0.2 s timeout, every time
    async with Simulator(units, modem.sim_end):
        sink = RecordingSink()
        keys = rtu_keys(modem, settle).replace("retries = 1", "retries = 0")
        cfg = bus_config(
            keys,
            [
                device("good", "sn3000-anemometer", 1, 0.05),
                device("slow", "sn3000-anemometer", 2, 0.05),
            ],
        )
        async with running(create_bus(cfg, context(sink))):
            await sink.wait_for(lambda s: len(s.values("good", "wind_speed")) >= 5, 20)
            assert units[2].requests >= 4
    assert [(d, ok) for d, ok, _ in sink.states] == [("slow", False)]


async def test_reconnects_after_the_serial_adapter_vanishes(modem: NullModem) -> None:
    units = {7: SimUnit(decoder("sn3000-anemometer"))}
    sink = RecordingSink()
    cfg = bus_config(rtu_keys(modem), [device("wind", "sn3000-anemometer", 7, 0.05)])
    bus = create_bus(cfg, context(sink))
    async with running(bus):
        async with Simulator(units, modem.sim_end):
            await sink.wait_for(lambda s: len(s.emitted) >= 2)
            modem.stop()  # the adapter is unplugged: both pty ends disappear
            await until(lambda: ("wind", False) in [(d, ok) for d, ok, _ in sink.states])
        before = len(sink.emitted)
        await asyncio.sleep(0.3)
        assert len(sink.emitted) == before
        modem.start()  # plugged back in, same device path
        async with Simulator(units, modem.sim_end):
            await sink.wait_for(lambda s: len(s.emitted) >= before + 2, 10)
    assert [(d, ok) for d, ok, _ in sink.states] == [("wind", False), ("wind", True)]
    assert bus.counters["connects"] >= 2  # type: ignore[attr-defined]


async def test_link_reports_a_missing_port_as_bus_unavailable(tmp_path: Path) -> None:
    from gateway.errors import BusUnavailable

    options = BusOptions("modbus-rtu", port=str(tmp_path / "ttyUSB9"), timeout=0.1)
    with pytest.raises(BusUnavailable, match="ttyUSB9"):
        async with Link(options):
            pass


# -- command lines ------------------------------------------------------------------------
def start_sim(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sim", "modbus", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        raise AssertionError(f"simulator did not start: {proc.stderr.read()}")  # type: ignore[union-attr]
    return proc, line.strip()


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=5)
    return out


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_sim_and_scan_command_lines_over_a_pty(
    modem: NullModem, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, banner = start_sim(
        "--profile", "relay-4ch", "--unit", "2", "--unit", "5", "--port", modem.sim_end
    )
    try:
        assert banner == f"serving relay-4ch as unit 2, 5 on {modem.sim_end}"
        argv = ["--port", modem.bus_end, "--units", "1-6", "--timeout", "0.1"]
        assert scan.main([*argv, "--register", "coil:0"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "unit 2: answers, coil 0 = 0 (0x0000)",
            "unit 5: answers, coil 0 = 0 (0x0000)",
            f"2 of 6 unit(s) answered on {modem.bus_end}",
        ]
        assert scan.main([*argv, "--units", "2"]) == 0  # relay modules have no holding 0
        assert capsys.readouterr().out.splitlines()[0] == (
            "unit 2: answers with exception 2 (illegal data address)"
        )

        async def switch() -> None:
            async with Link(BusOptions("modbus-rtu", port=modem.bus_end, timeout=0.5)) as link:
                await link.write_coils(5, 1, [True])

        asyncio.run(switch())
    finally:
        out = stop(proc)
    assert "unit 5: write coil 1 = [1]" in out


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_sim_command_line_over_tcp_with_faults(capsys: pytest.CaptureFixture[str]) -> None:
    proc, banner = start_sim(
        "--profile", "urm14", "--unit", "12", "--port", "tcp:127.0.0.1:0", "--exception", "6"
    )
    try:
        address = banner.rsplit(" ", 1)[1]
        assert banner.startswith("serving urm14 as unit 12 on tcp:127.0.0.1:")
        assert scan.main(["--port", address, "--units", "10-13", "--timeout", "0.1"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "unit 12: answers with exception 6 (server device busy)",
            f"1 of 4 unit(s) answered on {address}",
        ]
    finally:
        stop(proc)


def test_command_line_errors_are_specific(capsys: pytest.CaptureFixture[str]) -> None:
    assert scan.main(["--port", "tcp:127.0.0.1:1", "--units", "1-x"]) == 2
    assert "bad unit range '1-x'" in capsys.readouterr().err
    assert scan.main(["--port", "tcp:127.0.0.1:1", "--register", "holdng:0"]) == 2
    assert "bad --register 'holdng:0'" in capsys.readouterr().err
    assert scan.main(["--port", "tcp:127.0.0.1:1", "--units", "1"]) == 1
    assert "127.0.0.1:1: cannot connect" in capsys.readouterr().err
    from drivers.modbus import sim

    assert sim.main(["--profile", "no-such-profile", "--port", "tcp:127.0.0.1:0"]) == 1
    assert 'no profile "no-such-profile"' in capsys.readouterr().err


async def test_hotplug_add_of_the_adapter_cuts_the_reconnect_backoff(modem: NullModem) -> None:
    from gateway.hotplug import DeviceInfo, Hotplug

    hub = Hotplug()
    units = {7: SimUnit(decoder("sn3000-anemometer"))}
    sink = RecordingSink()
    modem.stop()  # boots with the adapter unplugged
    slow = (
        rtu_keys(modem)
        .replace("reconnect_min = 0.05", "reconnect_min = 60.0")
        .replace("reconnect_max = 0.2", "reconnect_max = 60.0")
    )
    assert "reconnect_min = 60.0" in slow
    cfg = bus_config(slow, [device("wind", "sn3000-anemometer", 7, 0.05)])
    bus = create_bus(cfg, context(sink, hotplug=hub))
    async with running(bus):
        await until(lambda: bus.counters["connects"] >= 1)  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        modem.start()
        async with Simulator(units, modem.sim_end):
            # Without the event the next attempt would come a minute later.
            hub.plug(DeviceInfo(devnode="/dev/pts/99", devlinks=(modem.bus_end,)))
            await sink.wait_for(lambda s: len(s.emitted) >= 1, 10)
