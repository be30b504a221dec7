"""The transport contract: every transport the registry knows passes the same scenarios.

Scenarios, each against the transport's real peer (pymodbus simulator over TCP or a socat
null modem, a pty line, a mocked BlueZ on a private D-Bus, a replay file):

  connect    the bus connects and readings reach the sink
  unplug     the peer goes away: the device is reported unavailable and no exception leaves the
             bus task (it keeps retrying)
  reconnect  the peer comes back: readings flow again and the device is available again
  cancel     cancelling the bus task stops it promptly, by cancellation (not an error), without
             reporting devices down (a gateway shutting down has not lost them)

Transports are discovered from gateway.registry: a new transport without a peer in PEERS fails
`test_every_transport_has_a_peer_or_says_why_not`, naming it. A scenario that does not apply
to a transport is said so, with the reason, in NOT_APPLICABLE; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from drivers.ble.advert import uuid16
from drivers.ble.mockbluez import MockBlueZ
from drivers.modbus.sim import Simulator, SimUnit
from drivers.serial.ptyline import pty_line
from drivers.serial.sim import sentence
from gateway.config import loader as config
from gateway.contract import BusContext
from gateway.registry import (
    driver_for_transport,
    has_actuators,
    hotplug_subsystems,
    known_transports,
)
from tests.fakes import RecordingSink
from tests.test_modbus_rtu import NullModem
from tests.test_modbus_tcp import decoder

DEVICE = "dev"  # every peer's bus has this one device
SCENARIOS = ("connect", "unplug", "reconnect", "cancel")


async def _nothing() -> None:
    return None


@dataclass
class Peer:
    """A transport's far end as the scenarios drive it."""

    bus: str  # TOML of one [[buses]] table with its device `dev`
    feed: Callable[[], Awaitable[None]] = _nothing  # offer one more reading (push transports)
    unplug: Callable[[], Awaitable[None]] | None = None  # the peer goes away
    replug: Callable[[], Awaitable[None]] | None = None  # and comes back


PeerFactory = Callable[[Path, pytest.MonkeyPatch], contextlib.AbstractAsyncContextManager[Peer]]

# -- peers ----------------------------------------------------------------------------------
MODBUS_TIMING = "timeout = 0.2\nretries = 1\nreconnect_min = 0.05\nreconnect_max = 0.2"
MODBUS_DEVICE = f"""
[[buses.devices]]
id = "{DEVICE}"
profile = "sn3000-anemometer"
unit = 1
interval = 0.05
"""


@contextlib.asynccontextmanager
async def synthetic_peer(tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    yield Peer(
        f"""
[[buses]]
name = "bus"
transport = "synthetic"
[[buses.devices]]
id = "{DEVICE}"
interval = 0.05
points = [ {{ quantity = "level", pattern = "counter" }} ]
"""
    )


@contextlib.asynccontextmanager
async def modbus_tcp_peer(tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    units = {1: SimUnit(decoder("sn3000-anemometer"))}
    sims = [await Simulator(units).__aenter__()]
    port = sims[0].tcp_port

    async def unplug() -> None:
        await sims[-1].close()

    async def replug() -> None:
        sims.append(await Simulator(units, f"tcp:127.0.0.1:{port}").__aenter__())

    bus = f"""
[[buses]]
name = "bus"
transport = "modbus-tcp"
host = "127.0.0.1"
port = {port}
{MODBUS_TIMING}
{MODBUS_DEVICE}"""
    try:
        yield Peer(bus, unplug=unplug, replug=replug)
    finally:
        await sims[-1].close()


@contextlib.asynccontextmanager
async def modbus_rtu_peer(tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    units = {1: SimUnit(decoder("sn3000-anemometer"))}
    modem = NullModem(tmp)
    modem.start()
    sims = [await Simulator(units, modem.sim_end).__aenter__()]

    async def unplug() -> None:
        await sims[-1].close()
        modem.stop()  # the adapter is pulled: both pty ends disappear

    async def replug() -> None:
        modem.start()  # plugged back in at the same path
        sims.append(await Simulator(units, modem.sim_end).__aenter__())

    bus = f"""
[[buses]]
name = "bus"
transport = "modbus-rtu"
port = "{modem.bus_end}"
baud = 9600
{MODBUS_TIMING}
{MODBUS_DEVICE}"""
    try:
        yield Peer(bus, unplug=unplug, replug=replug)
    finally:
        await sims[-1].close()
        modem.stop()


@contextlib.asynccontextmanager
async def serial_peer(tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    async with pty_line(tmp / "buoy") as line:
        temperatures = iter(range(100, 1000))

        async def feed() -> None:
            if line.plugged:
                body = f"INMTW,{next(temperatures) / 10:.1f},C"
                await line.write(f"{sentence(body)}\r\n".encode())

        async def unplug() -> None:
            line.unplug()

        async def replug() -> None:
            line.replug()

        bus = f"""
[[buses]]
name = "bus"
transport = "serial"
port = "{line.port}"
reconnect_min = 0.05
reconnect_max = 0.1
[[buses.devices]]
id = "{DEVICE}"
profile = "buoy-nmea"
interval = 0
"""
        yield Peer(bus, feed, unplug, replug)


T1 = "A4:C1:38:00:00:01"


def _bthome(packet: int) -> str:
    """A BTHome v2 advert payload: packet id `packet`, temperature 25.06 C."""
    return f"4000{packet % 256:02x}02ca09"


@contextlib.asynccontextmanager
async def ble_peer(tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    # a short directory: unix socket paths are limited to 108 bytes
    workdir = Path(tempfile.mkdtemp(prefix="bz-"))
    try:
        async with MockBlueZ(workdir) as bluez:
            env.setenv("DBUS_SYSTEM_BUS_ADDRESS", bluez.address)
            await bluez.add_adapter("hci0", passive=True)
            packets = iter(range(1, 10_000))

            async def feed() -> None:
                payload = bytes.fromhex(_bthome(next(packets)))
                await bluez.advertise("hci0", T1, -60, service={uuid16(0xFCD2): payload})

            async def unplug() -> None:
                await bluez.set_powered("hci0", False)

            async def replug() -> None:
                await bluez.set_powered("hci0", True)

            # stale_after: a BLE device is unavailable when it has not been heard for a while
            # (the adapter going down is logged; its devices go stale).
            bus = f"""
[[buses]]
name = "bus"
transport = "ble"
adapter = "hci0"
health_interval = 0.1
reconnect_min = 0.05
reconnect_max = 0.3
[[buses.devices]]
id = "{DEVICE}"
profile = "bthome"
address = "{T1}"
interval = 0
stale_after = 1.0
"""
            yield Peer(bus, feed, unplug, replug)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def ble_replay_peer(tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    # The peer of a replay bus is its recording. It cannot be unplugged; a silent stretch in
    # it is what a device going away looks like to the bus (see PEER_GONE_AS).
    times = [0.0, 0.1, 0.2, 0.3, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0]
    lines = [f"{t:.3f} {T1} -60 s:fcd2={_bthome(i + 1)}" for i, t in enumerate(times)]
    recording = tmp / "adverts.txt"
    recording.write_text("\n".join(lines) + "\n")
    bus = f"""
[[buses]]
name = "bus"
transport = "ble-replay"
file = "{recording}"
[[buses.devices]]
id = "{DEVICE}"
profile = "bthome"
address = "{T1}"
interval = 0
stale_after = 1.0
"""
    yield Peer(bus, unplug=_nothing, replug=_nothing)


PEERS: dict[str, PeerFactory] = {
    "synthetic": synthetic_peer,
    "modbus-tcp": modbus_tcp_peer,
    "modbus-rtu": modbus_rtu_peer,
    "serial": serial_peer,
    "ble": ble_peer,
    "ble-replay": ble_replay_peer,
}
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "synthetic": {
        "unplug": "no peer: the bus task generates its values itself",
        "reconnect": "no peer, so nothing to reconnect to",
    },
}
# How "the peer goes away" is staged where it is not literally a peer going away.
PEER_GONE_AS: dict[str, str] = {
    "ble": "adapter powered off; the device goes stale after stale_after",
    "ble-replay": "a 3 s silent stretch in the recording; the device goes stale, then speaks",
}


# Scenario runs that take seconds by nature (waiting for staleness, RTU timeouts and their
# settle time): in the full run, not in the fast lane.
SLOW = {
    ("unplug", "modbus-rtu"),
    ("unplug", "ble"),
    ("unplug", "ble-replay"),
    ("reconnect", "ble"),
    ("reconnect", "ble-replay"),
}


def cases(scenario: str) -> list[Any]:
    return [
        pytest.param(t, marks=pytest.mark.slow) if (scenario, t) in SLOW else t
        for t in known_transports()
        if scenario not in NOT_APPLICABLE.get(t, {})
    ]


# -- harness --------------------------------------------------------------------------------
@dataclass
class Run:
    task: asyncio.Task[None]
    sink: RecordingSink
    peer: Peer

    def readings(self) -> int:
        return sum(1 for e in self.sink.emitted if e.device == DEVICE)

    def states(self) -> list[bool]:
        return [ok for d, ok, _ in self.sink.states if d == DEVICE]

    def alive(self) -> None:
        if self.task.done():
            error = None if self.task.cancelled() else self.task.exception()
            raise AssertionError(f"the bus task ended: {error!r}")

    async def readings_flow(self, within: float = 20.0) -> None:
        before = self.readings()
        async with asyncio.timeout(within):
            while self.readings() <= before:
                self.alive()
                await self.peer.feed()
                await asyncio.sleep(0.05)

    async def reported(self, available: bool, since: int, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while available not in self.states()[since:]:
                self.alive()
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(transport: str, tmp: Path, env: pytest.MonkeyPatch) -> AsyncIterator[Run]:
    if transport not in PEERS:
        raise AssertionError(f"no peer for transport {transport!r}: add one to PEERS")
    async with PEERS[transport](tmp, env) as peer:
        cfg = config.parse(f'[gateway]\nid = "contract"\n{peer.bus}', "contract.toml")
        bus_cfg = cfg.buses[0]
        driver = driver_for_transport(transport)
        assert driver is not None and bus_cfg.transport == transport
        sink = RecordingSink()
        ctx = BusContext(sink=sink, log=structlog.get_logger().bind(bus=transport))
        task = asyncio.create_task(driver.create_bus(bus_cfg, ctx).run())
        try:
            yield Run(task, sink, peer)
        finally:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done, "the bus task did not stop when cancelled"
            assert task.cancelled(), f"the bus task ended with {task.exception()!r}"


# -- the contract ---------------------------------------------------------------------------
def test_every_transport_has_a_peer_or_says_why_not() -> None:
    transports = set(known_transports())
    missing = sorted(transports - set(PEERS))
    assert not missing, f"transports without a contract peer in PEERS: {missing}"
    assert set(NOT_APPLICABLE) <= transports and set(PEER_GONE_AS) <= transports
    for transport, reasons in NOT_APPLICABLE.items():
        assert set(reasons) <= set(SCENARIOS) and all(reasons.values()), transport
    assert {"synthetic", "modbus-tcp", "modbus-rtu", "serial", "ble", "ble-replay"} <= transports


@pytest.mark.parametrize("transport", cases("connect"))
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_connect_and_read(
    transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(transport, tmp_path, monkeypatch) as run:
        await run.readings_flow()
        await run.readings_flow()  # and keeps reading
        assert False not in run.states()


@pytest.mark.parametrize("transport", cases("unplug"))
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_unplug_reports_the_device_unavailable(
    transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(transport, tmp_path, monkeypatch) as run:
        await run.readings_flow()
        assert run.peer.unplug is not None, f"{transport}: no unplug, and no reason in the table"
        mark = len(run.states())
        await run.peer.unplug()
        await run.reported(False, mark)
        await asyncio.sleep(0.5)  # several reconnect attempts against a missing peer
        run.alive()
        assert run.states()[-1] is False


@pytest.mark.parametrize("transport", cases("reconnect"))
async def test_reconnect_resumes_readings(
    transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(transport, tmp_path, monkeypatch) as run:
        await run.readings_flow()
        assert run.peer.unplug is not None and run.peer.replug is not None, transport
        mark = len(run.states())
        await run.peer.unplug()
        await run.reported(False, mark)
        mark = len(run.states())
        await run.peer.replug()
        await run.readings_flow()
        await run.reported(True, mark)
        assert run.states()[-1] is True


@pytest.mark.parametrize("transport", cases("cancel"))
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_cancel_stops_the_bus_promptly_and_cleanly(
    transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(transport, tmp_path, monkeypatch) as run:
        await run.readings_flow()
        loop = asyncio.get_running_loop()
        started = loop.time()
        run.task.cancel()
        done, _ = await asyncio.wait({run.task}, timeout=2.0)
        assert done, f"{transport}: still running 2 s after cancel"
        assert run.task.cancelled(), f"{transport}: ended with {run.task.exception()!r}"
        assert loop.time() - started < 2.0
        assert False not in run.states()  # shutting down is not losing the device


def test_drivers_declare_which_transports_follow_hotplug() -> None:
    """The daemon opens a udev source only for these (gateway.daemon asks the registry)."""
    assert hotplug_subsystems(["serial", "modbus-tcp"]) == ("tty",)
    assert hotplug_subsystems(["modbus-rtu"]) == ("tty",)
    assert hotplug_subsystems(["modbus-tcp", "ble", "ble-replay", "synthetic"]) == ()
    assert hotplug_subsystems(["no-such-transport"]) == ()
    assert [t for t in known_transports() if has_actuators(t)] == ["modbus-rtu", "modbus-tcp"]
