"""python3-dbusmock template: BlueZ 5 with LE adapters, scripted advertisers and GATT sensors.

NOT imported by the gateway: python3-dbusmock loads this file into the *system* python3
(`python3 -m dbusmock --template <this file>`), where `dbus` and `dbusmock` live. It extends
dbusmock's stock `bluez5` template (whose objects and methods it re-exports) with what bleak's
BlueZ backend needs and a control API on `org.bluez.Mock`, driven by drivers.ble.mockbluez:

  AddLEAdapter(name, passive) -> path     adapter with Roles; `passive` adds the
                                          AdvertisementMonitorManager1 that passive scans need
  SetPowered(adapter, on)                 power the adapter off / on (stops discovery)
  Advertise(adapter, mac, rssi, mfr, svc) -> delivered    one advert (a{qay}, a{say}); only
                                          delivered while discovering or a monitor is active
  AddGattSensor(adapter, mac, chars)      a connectable ESS sensor: chars a(qay) (uuid16, value)
  SetCharacteristic(adapter, mac, uuid16, value)   new value; a notification if subscribed
  DropConnection(adapter, mac)            the remote end goes away

Connect exports the sensor's GATT objects and sets ServicesResolved, as bluetoothd does.
"""

from __future__ import annotations

from typing import Any

import dbus
from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5
from dbusmock.templates.bluez5 import *  # noqa: F403 - re-export the stock template's methods

BUS_NAME = "org.bluez"
MAIN_OBJ = "/"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

MOCK = "org.bluez.Mock"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
PROPS = "org.freedesktop.DBus.Properties"
ESS_UUID = "0000181a-0000-1000-8000-00805f9b34fb"

# A dbusmock.mockobject.DBusMockObject; dbusmock ships no type information, and this file runs
# in the system python3 where it lives (not this venv), so its objects are Any here.
MockObject = Any


def load(mock: Any, parameters: dict[str, Any]) -> None:
    bluez5.load(mock, parameters)


def _uuid(value: int) -> str:
    return f"0000{int(value):04x}-0000-1000-8000-00805f9b34fb"


def _changed(obj: MockObject, iface: str, props: dict[str, Any]) -> None:
    obj.EmitSignal(PROPS, "PropertiesChanged", "sa{sv}as", [iface, props, dbus.Array([], "s")])


def _manager() -> MockObject:
    return mockobject.objects["/"]


def _adapter_path(name: str) -> str:
    path = "/org/bluez/" + name
    if path not in mockobject.objects:
        raise dbus.exceptions.DBusException(f"no adapter {name}", name=MOCK + ".NoSuchAdapter")
    return path


def _device_path(adapter: str, mac: str) -> str:
    return _adapter_path(adapter) + "/dev_" + mac.upper().replace(":", "_")


def _start_discovery(adapter: MockObject) -> None:
    if not adapter.props[ADAPTER]["Powered"]:
        raise dbus.exceptions.DBusException("Resource Not Ready", name="org.bluez.Error.NotReady")
    adapter.discovering = True
    adapter.props[ADAPTER]["Discovering"] = dbus.Boolean(True, variant_level=1)
    _changed(adapter, ADAPTER, {"Discovering": dbus.Boolean(True, variant_level=1)})


def _stop_discovery(adapter: MockObject) -> None:
    if not adapter.discovering:
        raise dbus.exceptions.DBusException("No discovery started", name="org.bluez.Error.Failed")
    adapter.discovering = False
    adapter.props[ADAPTER]["Discovering"] = dbus.Boolean(False, variant_level=1)
    _changed(adapter, ADAPTER, {"Discovering": dbus.Boolean(False, variant_level=1)})


def _set_filter(adapter: MockObject, flt: dict[str, Any]) -> None:
    adapter.discovery_filter = flt


def _register_monitor(adapter: MockObject, path: str) -> None:
    if not adapter.props[ADAPTER]["Powered"]:
        raise dbus.exceptions.DBusException("Resource Not Ready", name="org.bluez.Error.NotReady")
    adapter.monitors.add(str(path))


def _unregister_monitor(adapter: MockObject, path: str) -> None:
    adapter.monitors.discard(str(path))


@dbus.service.method(MOCK, in_signature="sb", out_signature="s")
def AddLEAdapter(self: MockObject, name: str, passive: bool) -> str:
    path: str = bluez5.AddAdapter(self, name, "gateway-mock")
    adapter = mockobject.objects[path]
    adapter.discovering = False
    adapter.monitors = set()
    roles = dbus.Array(["central", "peripheral"], signature="s", variant_level=1)
    adapter.AddProperty(ADAPTER, "Roles", roles)
    adapter.discovery_filter = {}
    adapter.AddMethods(
        ADAPTER,
        [
            ("StartDiscovery", "", "", _start_discovery),
            ("StopDiscovery", "", "", _stop_discovery),
            ("SetDiscoveryFilter", "a{sv}", "", _set_filter),
        ],
    )
    if passive:
        adapter.AddMethods(
            MONITOR_MANAGER,
            [
                ("RegisterMonitor", "o", "", _register_monitor),
                ("UnregisterMonitor", "o", "", _unregister_monitor),
            ],
        )
    _changed(adapter, ADAPTER, {"Roles": roles})
    return path


@dbus.service.method(MOCK, in_signature="sb", out_signature="")
def SetPowered(self: MockObject, name: str, on: bool) -> None:
    adapter = mockobject.objects[_adapter_path(name)]
    adapter.props[ADAPTER]["Powered"] = dbus.Boolean(on, variant_level=1)
    changed = {"Powered": dbus.Boolean(on, variant_level=1)}
    if not on:
        # bluetoothd ends discovery sessions and monitors when the controller powers down
        adapter.discovering = False
        adapter.monitors.clear()
        adapter.props[ADAPTER]["Discovering"] = dbus.Boolean(False, variant_level=1)
        changed["Discovering"] = dbus.Boolean(False, variant_level=1)
    _changed(adapter, ADAPTER, changed)


def _device_props(adapter_path: str, mac: str, rssi: int) -> dict[str, Any]:
    return {
        "Address": dbus.String(mac, variant_level=1),
        "AddressType": dbus.String("public", variant_level=1),
        "Alias": dbus.String(mac.replace(":", "-"), variant_level=1),
        "Paired": dbus.Boolean(False, variant_level=1),
        "Bonded": dbus.Boolean(False, variant_level=1),
        "Trusted": dbus.Boolean(False, variant_level=1),
        "Blocked": dbus.Boolean(False, variant_level=1),
        "LegacyPairing": dbus.Boolean(False, variant_level=1),
        "Connected": dbus.Boolean(False, variant_level=1),
        "ServicesResolved": dbus.Boolean(False, variant_level=1),
        "Adapter": dbus.ObjectPath(adapter_path, variant_level=1),
        "UUIDs": dbus.Array([], signature="s", variant_level=1),
        "RSSI": dbus.Int16(rssi, variant_level=1),
        "ManufacturerData": dbus.Dictionary({}, signature="qv", variant_level=1),
        "ServiceData": dbus.Dictionary({}, signature="sv", variant_level=1),
    }


def _ensure_device(
    self: MockObject, adapter: str, mac: str, rssi: int, props: dict[str, Any] | None = None
) -> tuple[MockObject, bool]:
    """(device, created); a new device is announced with InterfacesAdded, as bluetoothd does."""
    adapter_path = _adapter_path(adapter)
    path = _device_path(adapter, mac)
    if path in mockobject.objects:
        return mockobject.objects[path], False
    initial = _device_props(adapter_path, mac.upper(), rssi)
    initial.update(props or {})
    self.AddObject(
        path,
        DEVICE,
        initial,
        [("Connect", "", "", _connect), ("Disconnect", "", "", _disconnect)],
    )
    device = mockobject.objects[path]
    device.gatt = []
    device.gatt_paths = []
    _manager().EmitSignal(
        OBJECT_MANAGER_IFACE,
        "InterfacesAdded",
        "oa{sa{sv}}",
        [dbus.ObjectPath(path), {DEVICE: device.props[DEVICE]}],
    )
    return device, True


@dbus.service.method(MOCK, in_signature="ssna{qay}a{say}", out_signature="b")
def Advertise(
    self: MockObject,
    adapter: str,
    mac: str,
    rssi: int,
    manufacturer: dict[int, bytes],
    service: dict[str, bytes],
) -> bool:
    adapter_obj = mockobject.objects[_adapter_path(adapter)]
    if not (adapter_obj.discovering or adapter_obj.monitors):
        return False  # nobody is scanning: the radio hears nothing
    mfr = dbus.Dictionary(
        {
            dbus.UInt16(k): dbus.ByteArray(bytes(v), variant_level=1)
            for k, v in manufacturer.items()
        },
        signature="qv",
        variant_level=1,
    )
    svc = dbus.Dictionary(
        {dbus.String(k): dbus.ByteArray(bytes(v), variant_level=1) for k, v in service.items()},
        signature="sv",
        variant_level=1,
    )
    changed = {"RSSI": dbus.Int16(rssi, variant_level=1)}
    if manufacturer:
        changed["ManufacturerData"] = mfr
    if service:
        changed["ServiceData"] = svc
    device, new = _ensure_device(self, adapter, mac, rssi, changed)
    if not new:
        device.props[DEVICE].update(changed)
        _changed(device, DEVICE, changed)
    return True


@dbus.service.method(MOCK, in_signature="ssa(qay)", out_signature="")
def AddGattSensor(self: MockObject, adapter: str, mac: str, chars: list[tuple[int, bytes]]) -> None:
    device, _new = _ensure_device(self, adapter, mac, -60)
    device.gatt = [(int(u), bytes(v)) for u, v in chars]


def _export_gatt(device: MockObject) -> None:
    service_path = device.path + "/service000c"
    device.AddObject(
        service_path,
        SERVICE,
        {
            "UUID": dbus.String(ESS_UUID, variant_level=1),
            "Device": dbus.ObjectPath(device.path, variant_level=1),
            "Primary": dbus.Boolean(True, variant_level=1),
        },
        [],
    )
    exported = {service_path: {SERVICE: mockobject.objects[service_path].props[SERVICE]}}
    for i, (uuid, value) in enumerate(device.gatt):
        path = f"{service_path}/char{0x0D + 2 * i:04x}"
        device.AddObject(
            path,
            CHAR,
            {
                "UUID": dbus.String(_uuid(uuid), variant_level=1),
                "Service": dbus.ObjectPath(service_path, variant_level=1),
                "Value": dbus.ByteArray(value, variant_level=1),
                "Flags": dbus.Array(["read", "notify"], signature="s", variant_level=1),
                "Notifying": dbus.Boolean(False, variant_level=1),
            },
            [
                ("ReadValue", "a{sv}", "ay", _read_value),
                ("StartNotify", "", "", _start_notify),
                ("StopNotify", "", "", _stop_notify),
            ],
        )
        exported[path] = {CHAR: mockobject.objects[path].props[CHAR]}
    device.gatt_paths = list(exported)
    for path, interfaces in exported.items():
        _manager().EmitSignal(
            OBJECT_MANAGER_IFACE,
            "InterfacesAdded",
            "oa{sa{sv}}",
            [dbus.ObjectPath(path), interfaces],
        )


def _unexport_gatt(device: MockObject) -> None:
    for path in reversed(device.gatt_paths):
        iface = SERVICE if path.endswith("service000c") else CHAR
        device.RemoveObject(path)
        _manager().EmitSignal(
            OBJECT_MANAGER_IFACE, "InterfacesRemoved", "oas", [dbus.ObjectPath(path), [iface]]
        )
    device.gatt_paths = []


def _connect(device: MockObject) -> None:
    props = device.props[DEVICE]
    if props["Connected"]:
        raise dbus.exceptions.DBusException(
            "Already Connected", name="org.bluez.Error.AlreadyConnected"
        )
    if not device.gatt:
        raise dbus.exceptions.DBusException(
            "le-connection-abort-by-remote", name="org.bluez.Error.Failed"
        )
    props["Connected"] = dbus.Boolean(True, variant_level=1)
    _changed(device, DEVICE, {"Connected": dbus.Boolean(True, variant_level=1)})
    _export_gatt(device)
    props["ServicesResolved"] = dbus.Boolean(True, variant_level=1)
    _changed(device, DEVICE, {"ServicesResolved": dbus.Boolean(True, variant_level=1)})


def _disconnect(device: MockObject) -> None:
    props = device.props[DEVICE]
    if not props["Connected"]:
        raise dbus.exceptions.DBusException("Not Connected", name="org.bluez.Error.NotConnected")
    props["Connected"] = dbus.Boolean(False, variant_level=1)
    props["ServicesResolved"] = dbus.Boolean(False, variant_level=1)
    _changed(
        device,
        DEVICE,
        {
            "ServicesResolved": dbus.Boolean(False, variant_level=1),
            "Connected": dbus.Boolean(False, variant_level=1),
        },
    )
    _unexport_gatt(device)


def _read_value(char: MockObject, options: dict[str, Any]) -> Any:
    return dbus.ByteArray(bytes(char.props[CHAR]["Value"]))


def _start_notify(char: MockObject) -> None:
    char.props[CHAR]["Notifying"] = dbus.Boolean(True, variant_level=1)
    _changed(char, CHAR, {"Notifying": dbus.Boolean(True, variant_level=1)})


def _stop_notify(char: MockObject) -> None:
    char.props[CHAR]["Notifying"] = dbus.Boolean(False, variant_level=1)
    _changed(char, CHAR, {"Notifying": dbus.Boolean(False, variant_level=1)})


@dbus.service.method(MOCK, in_signature="ssqay", out_signature="b")
def SetCharacteristic(self: MockObject, adapter: str, mac: str, uuid: int, value: bytes) -> bool:
    device = mockobject.objects[_device_path(adapter, mac)]
    device.gatt = [(u, bytes(value) if u == uuid else v) for u, v in device.gatt]
    for path in device.gatt_paths:
        obj = mockobject.objects[path]
        char = obj.props.get(CHAR)
        if char is None or str(char["UUID"]) != _uuid(uuid):
            continue
        char["Value"] = dbus.ByteArray(bytes(value), variant_level=1)
        if char["Notifying"]:
            _changed(obj, CHAR, {"Value": dbus.ByteArray(bytes(value), variant_level=1)})
            return True
    return False


@dbus.service.method(MOCK, in_signature="ss", out_signature="")
def DropConnection(self: MockObject, adapter: str, mac: str) -> None:
    _disconnect(mockobject.objects[_device_path(adapter, mac)])
