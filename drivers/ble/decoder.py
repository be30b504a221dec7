"""Profile -> decoder: one small class per advertisement protocol, all sharing one shape.

`compile_profile` reads the profile's own tables (BTHome object renames, ESS points) and
returns a `BleDecoder`, which implements gateway.contract.Decoder (text input for `gateway
decode` and [[example]] vectors; `decode` -> observations) and adds `decode_advert` (-> Decoded
with the de-duplication key) and `wants` (a cheap "is my payload in this advert" test) for the
bus. Pure: no I/O; only DecodeError escapes `parse_input`, `decode` and `decode_advert`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.ble import atc, beacon, bthome, ess, ruuvi
from drivers.ble.advert import Advert, Decoded, parse_hex, split_address, uuid16
from gateway.errors import DecodeError
from gateway.model import Observation, Value
from gateway.section import Section


def _hex_id(text: str) -> int | None:
    try:
        value = int(text, 16)
    except ValueError:
        return None
    return value if 0 <= value <= 0xFFFF else None


class BleDecoder:
    """Base: subclasses set `protocol` and implement `_payload_advert` and `decode_advert`."""

    protocol = ""
    event_protocol = False  # sightings are events (beacons): the bus tracks presence

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = dict(attributes)

    def parse_input(self, text: str) -> Advert:
        address, rest = split_address(text)
        return self._payload_advert(address, parse_hex(rest))

    def _payload_advert(self, address: str, payload: bytes) -> Advert:
        raise NotImplementedError

    def wants(self, advert: Advert) -> bool:
        raise NotImplementedError

    def decode(self, data: Any, params: Mapping[str, Value]) -> list[Observation]:
        return self.decode_advert(data, params).observations

    def decode_advert(self, advert: Any, params: Mapping[str, Value]) -> Decoded:
        raise NotImplementedError

    @staticmethod
    def _advert(data: Any) -> Advert:
        if not isinstance(data, Advert):
            raise DecodeError(f"expected an advertisement, got {type(data).__name__}")
        return data


class BTHomeDecoder(BleDecoder):
    protocol = "bthome"

    def __init__(self, attributes: Mapping[str, str], names: Mapping[int, str]) -> None:
        super().__init__(attributes)
        self.names = dict(names)

    def _payload_advert(self, address: str, payload: bytes) -> Advert:
        return Advert(address, service={uuid16(bthome.UUID): payload})

    def wants(self, advert: Advert) -> bool:
        return uuid16(bthome.UUID) in advert.service

    def decode_advert(self, advert: Any, params: Mapping[str, Value]) -> Decoded:
        return bthome.decode(self._advert(advert), params, self.names)


class RuuviDecoder(BleDecoder):
    protocol = "ruuvi"

    def _payload_advert(self, address: str, payload: bytes) -> Advert:
        return Advert(address, manufacturer={ruuvi.COMPANY: payload})

    def wants(self, advert: Advert) -> bool:
        return ruuvi.COMPANY in advert.manufacturer

    def decode_advert(self, advert: Any, params: Mapping[str, Value]) -> Decoded:
        return ruuvi.decode(self._advert(advert))


class AtcDecoder(BleDecoder):
    protocol = "atc"

    def _payload_advert(self, address: str, payload: bytes) -> Advert:
        return Advert(address, service={uuid16(atc.UUID): payload})

    def wants(self, advert: Advert) -> bool:
        return uuid16(atc.UUID) in advert.service

    def decode_advert(self, advert: Any, params: Mapping[str, Value]) -> Decoded:
        return atc.decode(self._advert(advert))


class EssDecoder(BleDecoder):
    """Input text: `2a6e=ca09 2a6f=bf13` (characteristic uuid = little-endian value bytes)."""

    protocol = "ess"

    def __init__(self, attributes: Mapping[str, str], points: Mapping[int, str]) -> None:
        super().__init__(attributes)
        self.points = dict(points)

    def parse_input(self, text: str) -> Advert:
        address, rest = split_address(text)
        values: dict[str, bytes] = {}
        for token in rest.split():
            uuid_text, sep, value = token.partition("=")
            uuid = _hex_id(uuid_text)
            if not sep or uuid is None:
                raise DecodeError(f"expected UUID=HEX pairs such as 2a6e=ca09, got {token!r}")
            values[uuid16(uuid)] = parse_hex(value)
        if not values:
            raise DecodeError("expected UUID=HEX pairs such as 2a6e=ca09")
        return Advert(address, service=values)

    def wants(self, advert: Advert) -> bool:
        return any(uuid16(u) in advert.service for u in self.points)

    def decode_advert(self, advert: Any, params: Mapping[str, Value]) -> Decoded:
        return ess.decode(self._advert(advert), self.points)


class BeaconDecoder(BleDecoder):
    """Input text: the iBeacon manufacturer data (02 15 ...) or Eddystone service data (00 ...)."""

    protocol = "beacon"
    event_protocol = True

    def _payload_advert(self, address: str, payload: bytes) -> Advert:
        if payload[:2] == beacon.IBEACON_PREFIX:
            return Advert(address, manufacturer={beacon.APPLE: payload})
        return Advert(address, service={uuid16(beacon.EDDYSTONE): payload})

    def wants(self, advert: Advert) -> bool:
        return beacon.APPLE in advert.manufacturer or uuid16(beacon.EDDYSTONE) in advert.service

    def decode_advert(self, advert: Any, params: Mapping[str, Value]) -> Decoded:
        return beacon.decode(self._advert(advert), params)


def _attributes(doc: Section) -> dict[str, str]:
    return doc.mapping("attributes", str, "a string")


def _bthome_names(doc: Section) -> dict[int, str]:
    names: dict[int, str] = {}
    table = doc.section("quantities")
    for key in list(table.raw):
        oid = _hex_id(key)
        if oid is None or oid not in bthome.OBJECTS:
            table.problem(key, 'expected a known BTHome object id such as "0x45"')
            table.ignore(key)
            continue
        names[oid] = table.text(key)
    table.finish()
    return names


def _ess_points(doc: Section) -> dict[int, str]:
    points: dict[int, str] = {}
    sections = doc.sections("point")
    if not sections:
        return {uuid: c.quantity for uuid, c in ess.CHARACTERISTICS.items()}
    for p in sections:
        text = p.text("characteristic")
        uuid = _hex_id(text) if text else None
        if text and (uuid is None or uuid not in ess.CHARACTERISTICS):
            known = ", ".join(f"{u:04x}" for u in ess.CHARACTERISTICS)
            p.problem("characteristic", f'unknown ESS characteristic "{text}"; known: {known}')
        default = ess.CHARACTERISTICS[uuid].quantity if uuid in ess.CHARACTERISTICS else ""
        quantity = p.text("quantity", default)
        if uuid is not None:
            points[uuid] = quantity
        p.finish()
    return points


def compile_profile(doc: Section, protocol: str) -> BleDecoder:
    attributes = _attributes(doc)
    if protocol == "bthome":
        return BTHomeDecoder(attributes, _bthome_names(doc))
    if protocol == "ess":
        return EssDecoder(attributes, _ess_points(doc))
    simple: dict[str, type[BleDecoder]] = {
        "ruuvi": RuuviDecoder,
        "atc": AtcDecoder,
        "beacon": BeaconDecoder,
    }
    return simple[protocol](attributes)
