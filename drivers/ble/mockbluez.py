"""A fake BlueZ on a private D-Bus system bus, for tests, `gateway sim ble` and the demo.

Starts `dbus-daemon` with a system-like bus on a socket in a work directory and
python3-dbusmock (in the system python3, where it is installed) with our template
(drivers/ble/mockbluez_template.py, built on dbusmock's `bluez5`). Point bleak at it with
`DBUS_SYSTEM_BUS_ADDRESS=<address>`. `MockBlueZ` then scripts adapters, advertisers and GATT
sensors over D-Bus with dbus-fast, and can kill and restart bluetoothd (the mock) or the whole
bus to rehearse outages. Missing `dbus-daemon` or python3-dbusmock raise MockUnavailable,
naming the Debian package. Never used by the daemon itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

SYSTEM_PYTHON = "/usr/bin/python3"
TEMPLATE = Path(__file__).with_name("mockbluez_template.py")
MOCK_IFACE = "org.bluez.Mock"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class MockUnavailable(RuntimeError):
    """dbus-daemon or python3-dbusmock is not installed (or would not start)."""


def check_tools(python: str = SYSTEM_PYTHON) -> None:
    if shutil.which("dbus-daemon") is None:
        raise MockUnavailable("dbus-daemon not found: install the Debian package `dbus`")
    try:
        probe = subprocess.run(
            [python, "-c", "import dbusmock.templates.bluez5"], capture_output=True, check=False
        )
        failed = probe.returncode != 0
    except OSError:
        failed = True
    if failed:
        raise MockUnavailable(
            f"{python} cannot import dbusmock: install the Debian package `python3-dbusmock`"
        )


class MockBlueZ:
    """`async with MockBlueZ(workdir) as bluez:` -> a running fake BlueZ (see module doc)."""

    def __init__(self, workdir: Path, python: str = SYSTEM_PYTHON) -> None:
        self.workdir = Path(workdir)
        self.python = python
        self.socket = self.workdir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self._daemon: asyncio.subprocess.Process | None = None
        self._mock: asyncio.subprocess.Process | None = None
        self._control: MessageBus | None = None
        self.adapters: dict[str, bool] = {}  # name -> passive, re-created on restart

    async def __aenter__(self) -> MockBlueZ:
        check_tools(self.python)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            await self.start_dbus()
            await self.start_bluez()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.stop_bluez()
        await self.stop_dbus()

    # -- processes ---------------------------------------------------------------------------
    async def start_dbus(self) -> None:
        config = self.workdir / "system-bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=self.socket), encoding="utf-8")
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._daemon = await asyncio.create_subprocess_exec(
            "dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for _ in range(200):
            # The socket file appears at bind(), before listen(): a busy machine showed the
            # gap (ECONNREFUSED). Ready is when a connection is taken.
            if self.socket.exists() and _accepts(self.socket):
                return
            if self._daemon.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise MockUnavailable("dbus-daemon did not listen on its socket")

    async def stop_dbus(self) -> None:
        await self._disconnect_control()
        await _stop(self._daemon)
        self._daemon = None

    async def start_bluez(self) -> None:
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        self._mock = await asyncio.create_subprocess_exec(
            self.python, "-m", "dbusmock", "--system", "--template", str(TEMPLATE),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        bus = await self._bus()
        for _ in range(300):
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="NameHasOwner",
                    signature="s",
                    body=["org.bluez"],
                )
            )
            if reply.message_type == MessageType.METHOD_RETURN and reply.body[0]:
                break
            if self._mock.returncode is not None:
                err = await self._mock.stderr.read() if self._mock.stderr else b""
                raise MockUnavailable(f"dbusmock exited: {err.decode(errors='replace')[-500:]}")
            await asyncio.sleep(0.02)
        else:
            raise MockUnavailable("dbusmock did not claim org.bluez")
        for name, passive in self.adapters.items():
            await self._call("AddLEAdapter", "sb", name, passive)

    async def stop_bluez(self) -> None:
        await _stop(self._mock)
        self._mock = None

    async def _bus(self) -> MessageBus:
        if self._control is not None and not self._control.connected:
            await self._disconnect_control()
        if self._control is None:
            self._control = await MessageBus(bus_address=self.address).connect()
        return self._control

    async def _disconnect_control(self) -> None:
        if self._control is not None:
            self._control.disconnect()
            with contextlib.suppress(Exception):
                await self._control.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast leaves it unannotated
            self._control = None

    async def _call(self, member: str, signature: str, *body: object) -> object:
        bus = await self._bus()
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/",
                interface=MOCK_IFACE,
                member=member,
                signature=signature,
                body=list(body),
            )
        )
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"mock {member}: {reply.error_name}: {reply.body}")
        return reply.body[0] if reply.body else None

    # -- scripting -----------------------------------------------------------------------------
    async def add_adapter(self, name: str = "hci0", passive: bool = True) -> str:
        self.adapters[name] = passive
        return str(await self._call("AddLEAdapter", "sb", name, passive))

    async def set_powered(self, adapter: str, on: bool) -> None:
        await self._call("SetPowered", "sb", adapter, on)

    async def advertise(
        self,
        adapter: str,
        address: str,
        rssi: int = -60,
        manufacturer: Mapping[int, bytes] | None = None,
        service: Mapping[str, bytes] | None = None,
    ) -> bool:
        """One advertisement; False when nobody was scanning (the radio heard nothing)."""
        delivered = await self._call(
            "Advertise",
            "ssna{qay}a{say}",
            adapter,
            address,
            rssi,
            dict(manufacturer or {}),
            dict(service or {}),
        )
        return bool(delivered)

    async def add_gatt_sensor(self, adapter: str, address: str, chars: Mapping[int, bytes]) -> None:
        await self._call(
            "AddGattSensor", "ssa(qay)", adapter, address, [[u, v] for u, v in chars.items()]
        )

    async def set_characteristic(self, adapter: str, address: str, uuid: int, value: bytes) -> bool:
        """New characteristic value; True when it went out as a notification."""
        return bool(await self._call("SetCharacteristic", "ssqay", adapter, address, uuid, value))

    async def drop_connection(self, adapter: str, address: str) -> None:
        await self._call("DropConnection", "ss", adapter, address)


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        async with asyncio.timeout(5):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _accepts(path: Path) -> bool:
    """A Unix socket at `path` takes connections (checked with one that closes at once)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
