"""One received BLE advertisement as a plain value, and the small pure helpers decoders share.

An `Advert` is what every advertisement decoder takes: the advertiser's address, its RSSI and
the manufacturer-specific and service data it carried. It is built by the live transport
(from bleak's AdvertisementData), by the replay reader and by `parse_input` for `gateway
decode`. `Decoded` is what the BLE decoders return to the bus: observations plus the
de-duplication key the bus uses statefully. Nothing here does I/O, logging or clock reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.errors import DecodeError
from gateway.model import Observation

# Bluetooth Base UUID (Core spec Vol 3 Part B 2.5.1): 16-bit UUIDs expand into it.
_BASE_UUID = "0000{:04x}-0000-1000-8000-00805f9b34fb"
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_HEX_JUNK = re.compile(r"[\s:,-]")

# Placeholder advertiser for `gateway decode` input without an address.
NO_ADDRESS = "00:00:00:00:00:00"


def uuid16(value: int) -> str:
    """The full 128-bit UUID string (lower case, as bleak reports it) of a 16-bit UUID."""
    return _BASE_UUID.format(value)


def short_uuid(uuid: str) -> int | None:
    """The 16-bit UUID inside a Bluetooth-base 128-bit UUID string, else None."""
    u = uuid.lower()
    if len(u) == 36 and u.startswith("0000") and u[8:] == "-0000-1000-8000-00805f9b34fb":
        return int(u[4:8], 16)
    if len(u) == 4:
        try:
            return int(u, 16)
        except ValueError:
            return None
    return None


def normalise_mac(text: str) -> str | None:
    """`aa-bb-cc-dd-ee-ff` / `aabbccddeeff` -> `AA:BB:CC:DD:EE:FF`; None when not a MAC."""
    if not isinstance(text, str) or not _MAC.match(text.strip()):
        return None
    digits = re.sub(r"[:-]", "", text.strip()).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def mac_bytes(address: str) -> bytes:
    """The 6 address bytes in display order (most significant first)."""
    mac = normalise_mac(address)
    if mac is None:
        raise DecodeError(f"not a Bluetooth address: {address!r}")
    return bytes.fromhex(mac.replace(":", ""))


def parse_hex(text: str) -> bytes:
    """Hex bytes with optional spaces, colons or a 0x prefix -> bytes, or DecodeError."""
    cleaned = _HEX_JUNK.sub("", text.strip())
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned:
        raise DecodeError("empty input: expected hex bytes")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise DecodeError(f"not hex bytes: {text.strip()[:40]!r}") from None


def split_address(text: str) -> tuple[str, str]:
    """`"54:48:E6:8F:80:A5 41 a4 ..."` -> (address, rest); no leading address -> NO_ADDRESS."""
    head, _, rest = text.strip().partition(" ")
    # A bare 12-digit head could be payload, so only a separated form counts as an address.
    mac = normalise_mac(head) if (":" in head or "-" in head) else None
    if mac is not None:
        return mac, rest
    return NO_ADDRESS, text


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement: address (upper case), RSSI (dBm, None if unknown) and its data.

    `manufacturer` maps the 16-bit company id to its bytes; `service` maps the 128-bit
    service UUID string (lower case) to its bytes, as bleak's AdvertisementData does.
    """

    address: str
    rssi: int | None = None
    manufacturer: Mapping[int, bytes] = field(default_factory=dict)
    service: Mapping[str, bytes] = field(default_factory=dict)
    name: str | None = None

    def service16(self, value: int) -> bytes | None:
        return self.service.get(uuid16(value))


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a BLE decoder found in one advertisement.

    `key` identifies the measurement (BTHome packet id or counter, Ruuvi sequence number) so
    the bus can drop repeats; None when the format has none. `trigger` marks adverts from
    trigger-based devices (sent only on an event), which the bus never marks stale.
    """

    observations: list[Observation]
    key: object = None
    trigger: bool = False


def need(data: bytes, length: int, what: str) -> None:
    if len(data) < length:
        raise DecodeError(f"{what}: {len(data)} bytes, expected at least {length}")
