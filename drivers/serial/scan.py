"""`gateway scan serial`: list serial ports with the identity a udev match needs.

For each tty backed by a USB device it prints the node, VID:PID, serial number and USB port
path, and the `match = {...}` line to paste into a `[[buses]]` table (or into a udev rule in
systemd/99-gateway-serial.rules). `--all` also lists ttys without a USB device behind them.
It opens no port (a scan must not disturb a running gateway).
"""

from __future__ import annotations

import argparse

from gateway.hotplug import DeviceInfo, enumerate_devices


def describe(device: DeviceInfo) -> str:
    if not device.vid:
        return f"{device.devnode}  (no USB device)"
    keys = [f'vid = "{device.vid}"', f'pid = "{device.pid}"']
    if device.serial:
        keys.append(f'serial = "{device.serial}"')
    else:
        keys.append(f'usb_path = "{device.usb_path}"')  # no serial: pin the physical port
    return (
        f"{device.devnode}  {device.vid}:{device.pid}  serial={device.serial or '-'}  "
        f"usb_path={device.usb_path or '-'}\n    match = {{ {', '.join(keys)} }}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway scan serial", description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="include ttys that are not USB")
    args = parser.parse_args(argv)
    devices = sorted(enumerate_devices("tty"), key=lambda d: d.devnode)
    shown = [d for d in devices if args.all or d.vid]
    for device in shown:
        print(describe(device))
    if not shown:
        print("no USB serial ports found (use --all to list every tty)")
    return 0
