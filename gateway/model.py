"""Value types that flow through the gateway.

Everything downstream of a decoder speaks these frozen values; nothing here does I/O.

Quantity vocabulary (the `quantity` of an Observation/Reading). A device reports each quantity
at most once per poll; when it has two of a kind, the second gets a suffix
(`temperature_internal`). Units are SI-ish strings as listed.

==================  ======  ===============================================
quantity            unit    meaning
==================  ======  ===============================================
water_level         cm      water depth above the paddy floor / gauge zero
water_temperature   degC    water temperature
temperature         degC    air temperature
humidity            %       relative humidity
pressure            hPa     air pressure
wind_speed          m/s     wind speed
wind_direction      deg     direction the wind blows from, 0 = north
wind_sector         ""      0..7 compass sector (0 = N, 7 = NW)
battery             %       battery charge
voltage             V       supply or battery voltage
distance            mm      distance to the target (ultrasonic)
angle               deg     an angle an instrument measures (pitch, roll; NMEA XDR type A)
co2                 ppm     carbon dioxide
solar_radiation     W/m2    global irradiance
rssi                dBm     radio signal strength of the last message
trap_state          ""      "set" | "triggered" | "fault"
motion              ""      True when motion is detected
presence            ""      True while a tag is seen
latitude/longitude  deg     WGS84 position (buoys)
relay               ""      coil state of a relay channel
door                ""      True while a door or window contact is open
button              ""      a button event: "press", "double_press", "long_press", ...
acceleration        g       along one axis, suffixed: acceleration_x, _y, _z
movement_count      ""      movements counted by the tag (wraps around)
tx_power            dBm     transmit power the advertiser declares
==================  ======  ===============================================
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from enum import IntEnum
from typing import NamedTuple

Value = float | int | str | bool


class Lane(IntEnum):
    """Outbox lanes; a lower number is more urgent and is never dropped before a higher one."""

    ALERT = 0  # platform alert events: jump the queue and wake the link
    MAIL = 1  # alert e-mail waiting for the mail server (consumed by the mailer, not MQTT)
    TELEMETRY = 2  # ordinary readings: batched, the first to be dropped when the outbox is full


# Observation and Reading are NamedTuples, not frozen dataclasses: one of each is built for
# every value on every path (decoded, stamped, read back from the outbox), and a tuple is built
# in one C call. A frozen dataclass's __init__ sets each field through object.__setattr__
# (~2.8 us for a Reading on a Pi-class core); a NamedTuple's generated __new__ is ~1 us, and
# `tuple.__new__(Reading, fields)`, which the hot paths use with every field in order, ~0.3 us.
# They stay immutable, hashable and comparable by value; tests/test_model.py holds the shape.


class Observation(NamedTuple):
    """What a pure decoder returns: one quantity's value, without time or sequence.

    `source` names a sub-device behind one configured device (a trap id behind one receiver,
    an advertiser's MAC), exactly as it came off the wire; None when the configured device is
    the source itself. The pipeline files it under `sub_device_key(device, source)`.
    `plausible` is False when the value lies outside the profile's plausibility range.
    """

    quantity: str
    value: Value
    unit: str
    source: str | None = None
    plausible: bool = True


class Reading(NamedTuple):
    """One stamped value on its way to the platform.

    seq: gateway-unique and strictly increasing across restarts (the platform de-duplicates
    on it). device: the key the reading is filed and published under: a configured device id,
    or for a sub-device the key `sub_device_key` built. ts: seconds since the Unix epoch, UTC.
    synced: False while the system clock was not known to be synchronised when the value was
    stamped. lane: the outbox lane. parent: the configured device a sub-device sits behind
    (receiver `traps` for trap 12, filed as `traps-12`); None for a configured device itself.
    Consumers use `parent` (and `sub`) instead of taking `device` apart.
    plausible: False when the value lies outside its profile's plausibility range. Such a
    value is flagged, not dropped: it is stored, published with its flag (every payload
    format carries it) and seen by the alert rules (a flat battery must reach the battery
    rule).
    origin: (gateway id, seq) of the box that first stamped it, for a row `gateway outbox
    import` took from another box's export; None for our own readings. The formats that carry
    seq carry it too, so a consumer de-duplicates on the original (gateway, seq).
    """

    seq: int
    device: str
    quantity: str
    value: Value
    unit: str
    ts: float
    synced: bool = True
    lane: Lane = Lane.TELEMETRY
    parent: str | None = None
    plausible: bool = True
    origin: tuple[str, int] | None = None

    @property
    def sub(self) -> str | None:
        """The sub-device's own id (`12` of `traps-12`), None for a configured device."""
        return None if self.parent is None else self.device[len(self.parent) + 1 :]


def _getter(fields: tuple[str, ...], name: str) -> operator.itemgetter[object]:
    """Field `name` of a NamedTuple with `fields` as a C-level getter, by its position."""
    return operator.itemgetter(fields.index(name))


# Fields as C-level getters, for passes over whole batches (`map(SEQ_OF, readings)` iterates
# without a Python frame per reading); one place knows where each field sits.
SEQ_OF, LANE_OF = _getter(Reading._fields, "seq"), _getter(Reading._fields, "lane")
QUANTITY_OF, TS_OF = _getter(Reading._fields, "quantity"), _getter(Reading._fields, "ts")
PLAUSIBLE_OF = _getter(Reading._fields, "plausible")
DEVICE_OF, UNIT_OF = _getter(Reading._fields, "device"), _getter(Reading._fields, "unit")
VALUE_OF, PARENT_OF = _getter(Reading._fields, "value"), _getter(Reading._fields, "parent")
OBSERVED_VALUE_OF, OBSERVED_PLAUSIBLE_OF = (
    _getter(Observation._fields, "value"),
    _getter(Observation._fields, "plausible"),
)


# What may stand in a device key: it becomes an MQTT topic level and a FIWARE entity id, so
# `/`, `+`, `#`, spaces (and anything else outside this set) are replaced.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def sub_device_key(device: str, source: str) -> str:
    """The one place a sub-device's key is built: `<device>-<source>` (trap 12 behind receiver
    `traps` is `traps-12`). `source` comes off the wire, so every character that could break a
    topic or an entity id becomes `_`; `device` is a configured id, already checked."""
    return f"{device}-{_UNSAFE.sub('_', source)}"


def typed_sub_device(key: str, devices: Iterable[str]) -> tuple[str, str] | None:
    """(configured device, sub-device id) for a key a person typed (`gateway test-alert
    --device traps-4`, the `alert-test` command), or None when no configured device can have
    built it. The data path never needs this: a Reading carries its `parent`."""
    best = max((d for d in devices if key.startswith(d + "-")), key=len, default=None)
    if best is None:
        return None
    sub = key[len(best) + 1 :]
    return (best, sub) if sub and sub_device_key(best, sub) == key else None
