"""Environmental Sensing Service (0x181A) characteristic values, from GATT or service data.

Characteristic formats per the Bluetooth GATT Specification Supplement: temperature 0x2A6E
s16 x0.01 degC, humidity 0x2A6F u16 x0.01 %, pressure 0x2A6D u32 x0.1 Pa, true wind speed
0x2A70 u16 x0.01 m/s, true wind direction 0x2A71 u16 x0.01 deg; battery level 0x2A19 u8 %
(Battery Service). The input is an Advert whose `service` maps characteristic UUIDs to
values: GATT reads are packed that way by drivers.ble.gatt, and some firmwares advertise
ESS values as service data under the characteristic UUID. Pure: only DecodeError escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.ble.advert import Advert, Decoded, short_uuid
from gateway.errors import DecodeError
from gateway.model import Observation


@dataclass(frozen=True, slots=True)
class Characteristic:
    quantity: str
    size: int
    signed: bool
    factor: float
    unit: str
    unknown: int | None  # the "value is not known" marker, if the spec defines one


CHARACTERISTICS: dict[int, Characteristic] = {
    0x2A6E: Characteristic("temperature", 2, True, 0.01, "degC", -0x8000),
    0x2A6F: Characteristic("humidity", 2, False, 0.01, "%", 0xFFFF),
    0x2A6D: Characteristic("pressure", 4, False, 0.001, "hPa", None),  # 0.1 Pa = 0.001 hPa
    0x2A70: Characteristic("wind_speed", 2, False, 0.01, "m/s", None),
    0x2A71: Characteristic("wind_direction", 2, False, 0.01, "deg", None),
    0x2A19: Characteristic("battery", 1, False, 1.0, "%", None),
}


def decode_value(uuid: int, raw: bytes, quantity: str | None = None) -> Observation | None:
    spec = CHARACTERISTICS.get(uuid)
    if spec is None:
        raise DecodeError(f"characteristic 0x{uuid:04X} is not an ESS value we know")
    if len(raw) != spec.size:
        raise DecodeError(f"characteristic 0x{uuid:04X}: {len(raw)} bytes, expected {spec.size}")
    value = int.from_bytes(raw, "little", signed=spec.signed)
    if spec.unknown is not None and value == spec.unknown:
        return None
    number: float | int = value if spec.factor == 1.0 else round(value * spec.factor, 6)
    return Observation(quantity or spec.quantity, number, spec.unit)


def decode(advert: Advert, points: Mapping[int, str]) -> Decoded:
    """Observations for every characteristic of `points` (uuid -> quantity) present."""
    out: list[Observation] = []
    for uuid_text, raw in advert.service.items():
        uuid = short_uuid(uuid_text)
        if uuid is None or uuid not in points:
            continue
        obs = decode_value(uuid, raw, points[uuid])
        if obs is not None:
            out.append(obs)
    if not out and not any(short_uuid(u) in points for u in advert.service):
        raise DecodeError("no ESS characteristic values in input")
    return Decoded(out)
