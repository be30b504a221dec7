"""iBeacon and Eddystone-UID frames -> "this tag was seen" observations.

iBeacon (Apple "Proximity Beacon Specification" R1): manufacturer data of company 0x004C,
`02 15` + proximity UUID(16) + major u16 BE + minor u16 BE + measured power s8.
Eddystone-UID (google/eddystone protocol-specification, UID frame): service data under 0xFEAA,
frame type 0x00, ranging power s8, namespace(10), instance(6), 2 reserved bytes (optional).
When the device's params name an identity (`uuid`/`major`/`minor` or `namespace`/`instance`),
a frame for another identity is refused. Turning sightings into presence / absence events
after N minutes is stateful and lives in the bus. Pure: only DecodeError escapes.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.ble.advert import Advert, Decoded
from gateway.errors import DecodeError
from gateway.model import Observation, Value

APPLE = 0x004C
IBEACON_PREFIX = b"\x02\x15"  # beacon type 0x02, remaining length 0x15 (21)
EDDYSTONE = 0xFEAA
EDDYSTONE_UID = 0x00


def _check(params: Mapping[str, Value], key: str, got: str | int) -> None:
    want = params.get(key)
    if want is None or want == "":
        return
    same = str(want).replace("-", "").lower() == got if isinstance(got, str) else want == got
    if not same:
        raise DecodeError(f"beacon {key} {got!r} does not match the configured {want!r}")


def identity(advert: Advert) -> tuple[str, dict[str, str | int], int] | None:
    """(kind, identity fields, calibrated tx power) of the first beacon frame, else None."""
    data = advert.manufacturer.get(APPLE)
    if data is not None and len(data) >= 23 and data[:2] == IBEACON_PREFIX:
        fields: dict[str, str | int] = {
            "uuid": data[2:18].hex(),
            "major": int.from_bytes(data[18:20], "big"),
            "minor": int.from_bytes(data[20:22], "big"),
        }
        return "ibeacon", fields, int.from_bytes(data[22:23], "big", signed=True)
    data = advert.service16(EDDYSTONE)
    if data is not None and len(data) >= 18 and data[0] == EDDYSTONE_UID:
        fields = {"namespace": data[2:12].hex(), "instance": data[12:18].hex()}
        return "eddystone", fields, int.from_bytes(data[1:2], "big", signed=True)
    return None


def decode(advert: Advert, params: Mapping[str, Value]) -> Decoded:
    found = identity(advert)
    if found is None:
        raise DecodeError("no iBeacon or Eddystone-UID frame in advert")
    _kind, fields, _power = found
    for key, got in fields.items():
        _check(params, key, got)
    out = [Observation("presence", True, "")]
    if advert.rssi is not None:
        out.append(Observation("rssi", advert.rssi, "dBm"))
    return Decoded(out)
