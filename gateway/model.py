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
co2                 ppm     carbon dioxide
solar_radiation     W/m2    global irradiance
rssi                dBm     radio signal strength of the last message
trap_state          ""      "set" | "triggered" | "fault"
motion              ""      True when motion is detected
presence            ""      True while a tag is seen
latitude/longitude  deg     WGS84 position (buoys)
relay               ""      coil state of a relay channel
==================  ======  ===============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

Value = float | int | str | bool


class Lane(IntEnum):
    """Outbox lanes; a lower number is more urgent and is never dropped before a higher one."""

    ALERT = 0  # platform alert events: jump the queue and wake the link
    MAIL = 1  # alert e-mail waiting for the mail server (consumed by the mailer, not MQTT)
    TELEMETRY = 2  # ordinary readings: batched, the first to be dropped when the outbox is full


@dataclass(frozen=True, slots=True)
class Observation:
    """What a pure decoder returns: one quantity's value, without time or sequence.

    `source` names a sub-device behind one configured device (a trap id behind one receiver,
    an advertiser's MAC); None when the configured device is the source itself.
    `plausible` is False when the value lies outside the profile's plausibility range.
    """

    quantity: str
    value: Value
    unit: str
    source: str | None = None
    plausible: bool = True


@dataclass(frozen=True, slots=True)
class Reading:
    """One stamped value on its way to the platform.

    seq: gateway-unique and strictly increasing across restarts (the platform de-duplicates
    on it). ts: seconds since the Unix epoch, UTC. synced: False while the system clock was
    not known to be synchronised when the value was stamped.
    """

    seq: int
    device: str
    quantity: str
    value: Value
    unit: str
    ts: float
    synced: bool = True
    lane: Lane = Lane.TELEMETRY
