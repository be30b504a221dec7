"""BTHome v2 advertisement decoder (plain and AES-CCM encrypted), table-driven.

Format per the BTHome v2 specification (bthome.io/format, /encryption): service data under
UUID 0xFCD2; byte 0 is the device-information byte (bit 0 encrypted, bit 2 trigger-based,
bits 5-7 version = 2); then `[object id][value]` pairs, little-endian, sizes fixed per id.
Encrypted payloads are `ciphertext || counter(4, LE) || MIC(4)`, AES-CCM with a 16-byte
bindkey, 4-byte tag, no associated data, nonce = MAC(6) + UUID16 LE (d2 fc) + device-info
byte + counter(4). Pure: no I/O, no clock; only DecodeError escapes. De-duplication on the
packet id (object 0x00) is the bus's job; the decoder only reports the key.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.ble.advert import NO_ADDRESS, Advert, Decoded, mac_bytes
from gateway.errors import DecodeError
from gateway.model import Observation, Value

UUID = 0xFCD2
UUID_LE = b"\xd2\xfc"
FLAG_ENCRYPTED = 0x01
FLAG_TRIGGER = 0x04
VERSION = 2
MIC_LEN = 4  # BTHome encryption: 4-byte message integrity code
COUNTER_LEN = 4


@dataclass(frozen=True, slots=True)
class Obj:
    """One object id: default quantity, byte size, signedness, factor, unit, kind."""

    quantity: str
    size: int
    signed: bool = False
    factor: float = 1.0
    unit: str = ""
    kind: str = "number"  # number | binary | button | dimmer | firmware | text | skip


_B = "binary"
# BTHome v2 object ids (bthome.io/format, "Sensor data", "Binary sensor data", "Events",
# "Device information"). Quantities follow gateway.model's vocabulary; units too.
OBJECTS: dict[int, Obj] = {
    0x00: Obj("packet_id", 1, kind="skip"),
    0x01: Obj("battery", 1, unit="%"),
    0x02: Obj("temperature", 2, True, 0.01, "degC"),
    0x03: Obj("humidity", 2, False, 0.01, "%"),
    0x04: Obj("pressure", 3, False, 0.01, "hPa"),
    0x05: Obj("illuminance", 3, False, 0.01, "lx"),
    0x06: Obj("mass", 2, False, 0.01, "kg"),
    0x07: Obj("mass_lb", 2, False, 0.01, "lb"),
    0x08: Obj("dew_point", 2, True, 0.01, "degC"),
    0x09: Obj("count", 1),
    0x0A: Obj("energy", 3, False, 0.001, "kWh"),
    0x0B: Obj("power", 3, False, 0.01, "W"),
    0x0C: Obj("voltage", 2, False, 0.001, "V"),
    0x0D: Obj("pm25", 2, unit="ug/m3"),
    0x0E: Obj("pm10", 2, unit="ug/m3"),
    0x0F: Obj("generic", 1, kind=_B),
    0x10: Obj("power_on", 1, kind=_B),
    0x11: Obj("opening", 1, kind=_B),
    0x12: Obj("co2", 2, unit="ppm"),
    0x13: Obj("tvoc", 2, unit="ug/m3"),
    0x14: Obj("moisture", 2, False, 0.01, "%"),
    0x15: Obj("battery_low", 1, kind=_B),
    0x16: Obj("battery_charging", 1, kind=_B),
    0x17: Obj("carbon_monoxide", 1, kind=_B),
    0x18: Obj("cold", 1, kind=_B),
    0x19: Obj("connectivity", 1, kind=_B),
    0x1A: Obj("door", 1, kind=_B),
    0x1B: Obj("garage_door", 1, kind=_B),
    0x1C: Obj("gas_detected", 1, kind=_B),
    0x1D: Obj("heat", 1, kind=_B),
    0x1E: Obj("light", 1, kind=_B),
    0x1F: Obj("lock", 1, kind=_B),
    0x20: Obj("moisture_detected", 1, kind=_B),
    0x21: Obj("motion", 1, kind=_B),
    0x22: Obj("moving", 1, kind=_B),
    0x23: Obj("occupancy", 1, kind=_B),
    0x24: Obj("plug", 1, kind=_B),
    0x25: Obj("presence", 1, kind=_B),
    0x26: Obj("problem", 1, kind=_B),
    0x27: Obj("running", 1, kind=_B),
    0x28: Obj("safety", 1, kind=_B),
    0x29: Obj("smoke", 1, kind=_B),
    0x2A: Obj("sound", 1, kind=_B),
    0x2B: Obj("tamper", 1, kind=_B),
    0x2C: Obj("vibration", 1, kind=_B),
    0x2D: Obj("window", 1, kind=_B),
    0x2E: Obj("humidity", 1, unit="%"),
    0x2F: Obj("moisture", 1, unit="%"),
    0x3A: Obj("button", 1, kind="button"),
    0x3C: Obj("dimmer", 2, kind="dimmer"),
    0x3D: Obj("count", 2),
    0x3E: Obj("count", 4),
    0x3F: Obj("rotation", 2, True, 0.1, "deg"),
    0x40: Obj("distance", 2, unit="mm"),
    0x41: Obj("distance", 2, False, 100.0, "mm"),  # sent in 0.1 m steps; we speak mm
    0x42: Obj("duration", 3, False, 0.001, "s"),
    0x43: Obj("current", 2, False, 0.001, "A"),
    0x44: Obj("speed", 2, False, 0.01, "m/s"),
    0x45: Obj("temperature", 2, True, 0.1, "degC"),
    0x46: Obj("uv_index", 1, False, 0.1),
    0x47: Obj("volume", 2, False, 0.1, "L"),
    0x48: Obj("volume", 2, False, 0.001, "L"),  # sent in mL
    0x49: Obj("volume_flow_rate", 2, False, 0.001, "m3/h"),
    0x4A: Obj("voltage", 2, False, 0.1, "V"),
    0x4B: Obj("gas", 3, False, 0.001, "m3"),
    0x4C: Obj("gas", 4, False, 0.001, "m3"),
    0x4D: Obj("energy", 4, False, 0.001, "kWh"),
    0x4E: Obj("volume", 4, False, 0.001, "L"),
    0x4F: Obj("water", 4, False, 0.001, "L"),
    0x50: Obj("timestamp", 4, unit="s"),
    0x51: Obj("acceleration", 2, False, 0.001, "m/s2"),
    0x52: Obj("gyroscope", 2, False, 0.001, "deg/s"),
    0x53: Obj("text", 0, kind="text"),
    0x54: Obj("raw", 0, kind="text"),
    0x55: Obj("volume_storage", 4, False, 0.001, "L"),
    0x56: Obj("conductivity", 2, unit="uS/cm"),
    0x57: Obj("temperature", 1, True, 1.0, "degC"),
    0x58: Obj("temperature", 1, True, 0.35, "degC"),
    0x59: Obj("count", 1, True),
    0x5A: Obj("count", 2, True),
    0x5B: Obj("count", 4, True),
    0x5C: Obj("power", 4, True, 0.01, "W"),
    0x5D: Obj("current", 2, True, 0.001, "A"),
    0x5E: Obj("direction", 2, False, 0.01, "deg"),
    0x5F: Obj("precipitation", 2, False, 0.1, "mm"),
    0x60: Obj("channel", 1),
    0x61: Obj("rotational_speed", 2, unit="rpm"),
    0xF0: Obj("device_type", 2, kind="skip"),
    0xF1: Obj("firmware", 4, kind="firmware"),
    0xF2: Obj("firmware", 3, kind="firmware"),
}

# Event values (bthome.io/format, "Events").
BUTTON_EVENTS = {
    0x00: None,
    0x01: "press",
    0x02: "double_press",
    0x03: "triple_press",
    0x04: "long_press",
    0x05: "long_double_press",
    0x06: "long_triple_press",
    0x80: "hold_press",
}
DIMMER_EVENTS = {0x00: None, 0x01: "rotate_left", 0x02: "rotate_right"}


def nonce(address: str, info: int, counter: bytes) -> bytes:
    return mac_bytes(address) + UUID_LE + bytes([info]) + counter


def encrypt(objects: bytes, key: bytes, address: str, counter: int, info: int = 0x41) -> bytes:
    """The service-data payload of an encrypted advert (for simulators and test vectors)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    count = struct.pack("<I", counter)
    sealed = AESCCM(key, tag_length=MIC_LEN).encrypt(nonce(address, info, count), objects, None)
    return bytes([info]) + sealed[:-MIC_LEN] + count + sealed[-MIC_LEN:]


def parse_bindkey(text: Value | None) -> bytes | None:
    if text is None or text == "":
        return None
    if not isinstance(text, str) or len(text) != 32:
        raise DecodeError("bindkey must be 32 hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise DecodeError("bindkey must be 32 hex digits") from None


def decrypt(payload: bytes, key: bytes | None, address: str) -> tuple[bytes, int]:
    """(plain objects, counter) of an encrypted payload, or DecodeError."""
    if key is None:
        raise DecodeError("encrypted BTHome advert but no bindkey is configured")
    if len(payload) < 1 + COUNTER_LEN + MIC_LEN + 1:
        raise DecodeError(f"encrypted BTHome advert too short ({len(payload)} bytes)")
    # Imported here: the crypto library costs megabytes of RSS on every box, and only
    # sites with encrypted sensors need it.
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    info = payload[0]
    body, count, mic = payload[1:-8], payload[-8:-4], payload[-4:]
    try:
        plain = AESCCM(key, tag_length=MIC_LEN).decrypt(
            nonce(address, info, count), body + mic, None
        )
    except InvalidTag:
        raise DecodeError(
            "BTHome decryption failed: wrong bindkey (or advert corrupted / from another MAC)"
        ) from None
    return plain, struct.unpack("<I", count)[0]


def _number(raw: bytes, spec: Obj) -> Value:
    value = int.from_bytes(raw, "little", signed=spec.signed)
    if spec.factor == 1.0:
        return value
    # round away float noise from the factor (0.01 * 2506 = 25.060000000000002)
    return round(value * spec.factor, 6)


def parse_objects(data: bytes, names: Mapping[int, str]) -> tuple[list[Observation], int | None]:
    """Observations and the packet id from the object stream; DecodeError on garbage."""
    out: list[Observation] = []
    seen: dict[str, int] = {}
    packet: int | None = None
    i = 0
    while i < len(data):
        oid = data[i]
        spec = OBJECTS.get(oid)
        if spec is None:
            # Sizes are implied by the id, so nothing after an unknown id can be parsed.
            raise DecodeError(f"unknown BTHome object id 0x{oid:02X} at byte {i}")
        i += 1
        size = spec.size
        if spec.kind == "text":
            if i >= len(data):
                raise DecodeError(f"BTHome object 0x{oid:02X} truncated at byte {i}")
            size = data[i]
            i += 1
        raw = data[i : i + size]
        if len(raw) < size:
            raise DecodeError(f"BTHome object 0x{oid:02X} truncated at byte {i - 1}")
        i += size
        value: Value | None
        if oid == 0x00:
            packet = raw[0]
            continue
        if spec.kind == "skip":
            continue
        if spec.kind == "binary":
            value = raw[0] != 0
        elif spec.kind == "button":
            value = BUTTON_EVENTS.get(raw[0], f"event_0x{raw[0]:02x}")
        elif spec.kind == "dimmer":
            event = DIMMER_EVENTS.get(raw[0], f"event_0x{raw[0]:02x}")
            value = None if event is None else f"{event}:{raw[1]}"
        elif spec.kind == "firmware":
            value = ".".join(str(b) for b in reversed(raw))
        elif spec.kind == "text":
            value = raw.decode("utf-8", "replace") if oid == 0x53 else raw.hex()
        else:
            value = _number(raw, spec)
        if value is None:
            continue  # "no event" in an event slot
        name = names.get(oid, spec.quantity)
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(Observation(name if n == 1 else f"{name}_{n}", value, spec.unit))
    return out, packet


def decode(advert: Advert, params: Mapping[str, Value], names: Mapping[int, str]) -> Decoded:
    """Decode the BTHome service data of one advert (see module docstring)."""
    payload = advert.service16(UUID)
    if payload is None:
        raise DecodeError("no BTHome service data (UUID 0xFCD2) in advert")
    if not payload:
        raise DecodeError("empty BTHome service data")
    info = payload[0]
    version = info >> 5
    if version != VERSION:
        raise DecodeError(f"BTHome version {version} not supported (device info 0x{info:02X})")
    key = parse_bindkey(params.get("bindkey"))
    trigger = bool(info & FLAG_TRIGGER)
    if info & FLAG_ENCRYPTED:
        if advert.address == NO_ADDRESS and key is not None:
            raise DecodeError(
                "encrypted BTHome needs the advertiser's MAC (it is part of the nonce): "
                "put it before the hex, as in '54:48:E6:8F:80:A5 41 ...'"
            )
        plain, counter = decrypt(payload, key, advert.address)
        observations, packet = parse_objects(plain, names)
        dedup: object = ("p", packet) if packet is not None else ("c", counter)
    else:
        if key is not None:
            # A device with a bindkey never sends in clear; a plain advert is a spoof.
            raise DecodeError("unencrypted BTHome advert from a device configured with a bindkey")
        observations, packet = parse_objects(payload[1:], names)
        dedup = None if packet is None else ("p", packet)
    return Decoded(observations, dedup, trigger)
