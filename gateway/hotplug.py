"""Device hotplug: which devices exist now, and events when they come and go.

A `Hotplug` is handed to every bus as `BusContext.hotplug`. Buses ask it for the current
devices of a subsystem (to resolve a udev match such as a USB VID:PID to a device node at
connect time) and subscribe to `add` / `remove` events (to reconnect at once when their adapter
comes back, and to mark their devices unavailable the moment it is pulled).

The base class is an in-memory device table fed by `publish` — tests inject events through it,
no patching needed. `open_udev()` backs it with pyudev: enumeration from sysfs and a netlink
monitor read through the event loop (no thread). With udevd running the udev source is used
(events arrive after rules ran, so /dev/gateway/<name> links exist); without udevd (containers,
this CI) only the kernel source sees anything, and its `add` arrives before udev could have made
links or set permissions, so `settle` tells subscribers to wait a moment before acting.
`node_problems(path)` says why a configured path is not a device node now (for `gateway
check`). This module opens no device nodes and knows nothing about serial ports or buses.

Daemon wiring (one monitor for the whole process, opened around the bus TaskGroup):

    async with hotplug.open_udev(("tty",)) as hub:      # source "auto": udev if udevd runs
        ctx = BusContext(sink=pipe, log=..., hotplug=hub)  # the same hub for every bus
        ...  # TaskGroup with every bus.run()

Tests build `Hotplug()` (optionally with a `table` of DeviceInfo) and call `plug` / `unplug`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

UDEV_CONTROL = "/run/udev/control"  # exists while systemd-udevd runs
KERNEL_SETTLE = 1.0  # seconds: udev usually finishes rules for a tty within a few 100 ms


@dataclass(frozen=True)
class DeviceInfo:
    """A device node and the identity of the USB device behind it (empty when not USB).

    `usb_path` is the kernel's name of the USB port the device hangs off (`1-1.2`: bus 1,
    hub port 1, port 2); it stays the same whatever gets plugged there.
    """

    devnode: str
    devpath: str = ""  # sysfs path without /sys, e.g. /devices/.../ttyUSB0/tty/ttyUSB0
    subsystem: str = "tty"
    vid: str = ""  # lower-case hex, 4 digits
    pid: str = ""
    serial: str = ""
    usb_path: str = ""
    devlinks: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceEvent:
    action: str  # add | remove | change | bind | unbind | move
    device: DeviceInfo


Listener = Callable[[DeviceEvent], None]


@dataclass
class Hotplug:
    """A device table and a fan-out of device events to subscribers."""

    table: dict[str, DeviceInfo] = field(default_factory=dict)
    settle: float = 0.0
    _listeners: list[Listener] = field(default_factory=list)

    def devices(self, subsystem: str = "tty") -> list[DeviceInfo]:
        return [d for d in self.table.values() if d.subsystem == subsystem]

    @contextlib.contextmanager
    def subscribe(self, listener: Listener) -> Iterator[None]:
        """Call `listener(event)` for every event while the block runs; keep it quick."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def publish(self, event: DeviceEvent) -> None:
        key = event.device.devpath or event.device.devnode
        if event.action == "remove":
            self.table.pop(key, None)
        elif event.action == "add":
            self.table[key] = event.device
        for listener in list(self._listeners):
            listener(event)

    # Conveniences for tests and simulators.
    def plug(self, device: DeviceInfo) -> None:
        self.publish(DeviceEvent("add", device))

    def unplug(self, device: DeviceInfo) -> None:
        self.publish(DeviceEvent("remove", device))


class UdevHotplug(Hotplug):
    """Hotplug backed by pyudev: sysfs enumeration and a netlink monitor on the event loop."""

    def __init__(self, context: Any, settle: float) -> None:
        super().__init__(settle=settle)
        self._context = context

    def devices(self, subsystem: str = "tty") -> list[DeviceInfo]:
        return [
            _info(d)
            for d in self._context.list_devices(subsystem=subsystem)
            if d.device_node is not None
        ]


def _info(device: Any) -> DeviceInfo:
    """DeviceInfo from a pyudev Device, walking up to its USB device when there is one."""
    usb = None
    with contextlib.suppress(Exception):  # sysfs is gone for a `remove`: identity unknown
        usb = device.find_parent("usb", "usb_device")
    vid = pid = serial = usb_path = ""
    if usb is not None:
        attrs = usb.attributes
        vid = _attr(attrs, "idVendor")
        pid = _attr(attrs, "idProduct")
        serial = _attr(attrs, "serial")
        usb_path = usb.sys_name
    props = device.properties
    return DeviceInfo(
        devnode=device.device_node or props.get("DEVNAME", ""),
        devpath=device.device_path,
        subsystem=device.subsystem or "",
        vid=vid.lower() or props.get("ID_VENDOR_ID", "").lower(),
        pid=pid.lower() or props.get("ID_MODEL_ID", "").lower(),
        serial=serial or props.get("ID_SERIAL_SHORT", ""),
        usb_path=usb_path,
        devlinks=tuple(props.get("DEVLINKS", "").split()),
    )


def _attr(attrs: Any, name: str) -> str:
    try:
        return str(attrs.asstring(name)).strip()
    except (KeyError, UnicodeDecodeError, OSError):
        return ""


def enumerate_devices(subsystem: str = "tty") -> list[DeviceInfo]:
    """The devices of `subsystem` now present, from sysfs (no monitor, no daemon needed)."""
    import pyudev

    return UdevHotplug(pyudev.Context(), 0.0).devices(subsystem)


def node_problems(path: str) -> list[str]:
    """Why `path` is not a device node now, one sentence (empty when it is one).

    Looks only (stat, following links such as /dev/gateway/<name>); opens nothing.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return [f"{path} does not exist (unplugged, or no udev rule names it?)"]
    except OSError as exc:
        return [f"cannot look at {path}: {exc.strerror or exc}"]
    if not stat.S_ISCHR(mode):
        return [f"{path} is not a device node (a character device such as /dev/ttyUSB0)"]
    return []


def pick_source(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "udev" if os.path.exists(UDEV_CONTROL) else "kernel"


@contextlib.asynccontextmanager
async def open_udev(
    subsystems: Iterable[str] = ("tty",), source: str = "auto"
) -> AsyncIterator[UdevHotplug]:
    """A Hotplug fed by a pyudev monitor until the block ends (the daemon's entry point)."""
    import pyudev

    chosen = pick_source(source)
    context = pyudev.Context()
    monitor = pyudev.Monitor.from_netlink(context, source=chosen)
    wanted = set(subsystems)
    for subsystem in wanted:
        monitor.filter_by(subsystem)
    hub = UdevHotplug(context, KERNEL_SETTLE if chosen == "kernel" else 0.0)

    def drain() -> None:
        while True:
            device = monitor.poll(timeout=0)
            if device is None:
                return
            # The kernel source ignores the BPF subsystem filter: filter here too.
            if device.subsystem in wanted:
                hub.publish(DeviceEvent(device.action or "change", _event_info(device)))

    monitor.start()
    loop = asyncio.get_running_loop()
    loop.add_reader(monitor.fileno(), drain)
    try:
        yield hub
    finally:
        loop.remove_reader(monitor.fileno())
        # pyudev has no close(): the netlink socket goes with the monitor's last reference.


def _event_info(device: Any) -> DeviceInfo:
    info = _info(device)
    if not info.devnode and device.sys_name:
        info = replace(info, devnode=f"/dev/{device.sys_name}")
    return info
