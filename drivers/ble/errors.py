"""bleak, dbus-fast and OS exceptions of the BLE driver as gateway.errors types.

`mapped` is used wherever drivers.ble.transport calls bleak or D-Bus, so each library failure
is classified once: BlueZ or D-Bus gone or an adapter in trouble is BusUnavailable, a policy
or authentication refusal is Permanent (someone must fix the system config), a timeout is
DeviceUnavailable. `device_error` narrows the same for one GATT device: its failed connect or
read is that device's trouble unless the adapter is gone, which the adapter's own health
check reports. Anything else is a bug and is re-raised.
"""

from __future__ import annotations

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)
from dbus_fast.errors import AuthError, DBusError

from gateway.errors import BusUnavailable, DeviceUnavailable, GatewayError, Permanent, Transient

_DENIED = {
    BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM,
    BleakBluetoothNotAvailableReason.DENIED_BY_USER,
    BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN,
}
NO_BLUEZ = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",  # it died while we asked
)


def mapped(exc: BaseException, what: str) -> GatewayError:
    """A bleak / dbus-fast / OS exception as one of ours (see gateway.errors)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, BleakBluetoothNotAvailableError):
        if exc.reason in _DENIED:
            return Permanent(f"{what}: D-Bus denied access to BlueZ ({exc.args[0]}); "
                             "run as a user allowed to talk to org.bluez")  # fmt: skip
        return BusUnavailable(f"{what}: {exc.args[0]}")
    if isinstance(exc, BleakDBusError):
        if exc.dbus_error in NO_BLUEZ:
            return BusUnavailable(f"{what}: BlueZ (bluetoothd) is not running")
        if exc.dbus_error == "org.freedesktop.DBus.Error.AccessDenied":
            return Permanent(f"{what}: D-Bus policy denies access to BlueZ")
        return BusUnavailable(f"{what}: {exc.dbus_error} {exc.dbus_error_details or ''}".strip())
    if isinstance(exc, AuthError):
        return Permanent(f"{what}: D-Bus authentication failed ({exc})")
    if isinstance(exc, EOFError | ConnectionError | FileNotFoundError):
        return BusUnavailable(f"{what}: D-Bus system bus unavailable ({type(exc).__name__})")
    if isinstance(exc, TimeoutError):
        return DeviceUnavailable(f"{what}: timed out")
    if isinstance(exc, BleakError | DBusError | OSError):
        return BusUnavailable(f"{what}: {exc}")
    raise exc


def device_error(exc: BaseException, what: str) -> Transient | Permanent:
    err = mapped(exc, what)
    if isinstance(err, BusUnavailable):
        # A failed connect or read is this device's trouble unless the adapter is gone,
        # which the adapter's own health check reports.
        return DeviceUnavailable(str(err))
    if isinstance(err, Transient | Permanent):
        return err
    # mapped() only makes Transient or Permanent errors of library exceptions; anything else
    # (a DecodeError reaching here) is a bug
    raise err
