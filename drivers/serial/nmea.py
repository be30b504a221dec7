"""NMEA 0183 sentence decoder for buoy instruments: a pure function of one text line.

Sentences are keyed on their 3-letter type, never on the talker (`$IIMWV` and `$WIMWV` are the
same), and types the profile does not use are ignored before any splitting, so a busy
multiplexer costs little. The checksum (`*hh`, XOR of the bytes between `$` and `*`, NMEA 0183
v4.11 sec. 5.2.1) is verified; a bad one raises `ChecksumError` so the bus can count it.
XDR transducer quads are decoded in drivers.serial.xdr; `decode_counted` also returns the
quads that map to no quantity, so the bus can count them.
No I/O, no clock, no logging; only DecodeError (and its subclass) escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers.serial.xdr import XdrPoint, compile_xdr, decode_xdr
from gateway.errors import DecodeError
from gateway.model import Observation, Value
from gateway.section import Section

# Speed units of MWV/MWD/MDA (NMEA 0183 v4.11, MWV field 4): to m/s. 1 kn = 1852 m / 3600 s.
SPEED_TO_MS = {"M": 1.0, "K": 1 / 3.6, "N": 1852 / 3600}
# Converted values are rounded to this many decimals: the inputs carry 0.1 kn / 0.1 unit, so
# more digits are float noise that only lengthens payloads.
DECIMALS = 3
SUPPORTED = ("MWV", "MTW", "MWD", "XDR", "MDA", "GGA", "RMC")


class ChecksumError(DecodeError):
    """The sentence's checksum does not match its content (line noise, a broken talker)."""


@dataclass(frozen=True)
class NmeaDecoder:
    """Decodes the sentences a profile uses; see firmware-configs/serial/*.toml for the keys."""

    sentences: frozenset[str] = frozenset(SUPPORTED)
    require_checksum: bool = True
    rename: Mapping[str, str] = field(default_factory=dict)
    xdr: tuple[XdrPoint, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    protocol: str = "nmea"

    def parse_input(self, text: str) -> str:
        line = text.strip()
        if not line:
            raise DecodeError("empty line")
        return line

    def decode(self, data: object, params: Mapping[str, Value]) -> list[Observation]:
        return self.decode_counted(data, params)[0]

    def decode_counted(
        self, data: object, params: Mapping[str, Value]
    ) -> tuple[list[Observation], tuple[str, ...]]:
        """`decode`, and the XDR quads of the sentence that map to no quantity (for the bus
        to count); DecodeError as `decode`."""
        no_quads: tuple[list[Observation], tuple[str, ...]] = ([], ())
        if not isinstance(data, str):
            raise DecodeError(f"expected a text line, got {type(data).__name__}")
        # Resynchronise inside a line: noise before the last `$` (a talker powering up, a
        # half sentence after a reconnect) is not part of the sentence.
        start = data.rfind("$")
        if start < 0:
            if "!" in data:
                return no_quads  # `!` encapsulation (AIS on a shared multiplexer): not ours
            raise DecodeError("not an NMEA sentence (no '$')")
        line = data[start:].rstrip("\r\n")
        kind = line[3:6]  # `$` + 2-letter talker + 3-letter type (sec. 5.3)
        if kind not in self.sentences or (kind not in _HANDLERS and kind != "XDR"):
            return no_quads
        body = _verified_body(line, self.require_checksum)
        fields = body.split(",")
        if len(fields[0]) != 5 or fields[0][0] == "P":
            return no_quads  # proprietary ($P + maker code, sec. 5.3.3) or malformed address
        unmapped: tuple[str, ...] = ()
        if kind == "XDR":
            out, unmapped = decode_xdr(fields, self.xdr)
        else:
            out = _HANDLERS[kind](self, fields)
        if self.rename:
            out = [_renamed(o, self.rename) for o in out]
        return out, unmapped


def _renamed(o: Observation, rename: Mapping[str, str]) -> Observation:
    new = rename.get(o.quantity)
    return o if new is None else Observation(new, o.value, o.unit, o.source, o.plausible)


def xor_checksum(body: str, encoding: str = "ascii") -> int:
    """NMEA 0183 checksum (sec. 5.2.1): XOR of every byte between `$` and `*`. Trap
    receivers use the same rule over their line before `*`."""
    got = 0
    for ch in body.encode(encoding, "replace"):
        got ^= ch
    return got


def _verified_body(line: str, required: bool) -> str:
    star = line.rfind("*")
    if star < 0:
        if required:
            raise DecodeError("missing checksum (*hh)")
        return line[1:]
    body = line[1:star]
    given = line[star + 1 :].strip()
    if len(given) != 2:
        raise DecodeError(f"malformed checksum field {given[:8]!r}")
    try:
        want = int(given, 16)
    except ValueError:
        raise DecodeError(f"malformed checksum field {given!r}") from None
    got = xor_checksum(body)
    if got != want:
        raise ChecksumError(f"bad checksum: sentence says {want:02X}, content gives {got:02X}")
    return body


def _num(fields: list[str], i: int) -> float | None:
    """Field i as a number; None when empty or absent (NMEA leaves unknown fields empty)."""
    if i >= len(fields) or fields[i] == "":
        return None
    text = fields[i]
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(f"field {i} is not a number: {text[:16]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DecodeError(f"field {i} is not a finite number: {text[:16]!r}")
    return value


def _field(fields: list[str], i: int) -> str:
    return fields[i] if i < len(fields) else ""


def _speed(value: float | None, unit: str) -> float | None:
    if value is None:
        return None
    factor = SPEED_TO_MS.get(unit)
    if factor is None:
        raise DecodeError(f"unknown speed unit {unit[:4]!r} (want K, M or N)")
    return round(value * factor, DECIMALS)


def _angle(value: float | None) -> float | None:
    if value is None:
        return None
    if not 0.0 <= value <= 360.0:
        raise DecodeError(f"angle {value} outside 0..360")
    return value % 360.0


def _obs(out: list[Observation], quantity: str, value: float | None, unit: str) -> None:
    if value is not None:
        out.append(Observation(quantity, value, unit))


def _mwv(d: NmeaDecoder, f: list[str]) -> list[Observation]:
    # $--MWV,angle,R|T,speed,K|M|N,A|V  (wind speed and angle)
    if _field(f, 5)[:1] != "A":
        return []  # status V: the instrument says the data is invalid
    ref = _field(f, 2)
    if ref not in ("R", "T"):
        raise DecodeError(f"MWV reference {ref[:4]!r} is neither R nor T")
    suffix = "_relative" if ref == "R" else ""
    out: list[Observation] = []
    _obs(out, "wind_direction" + suffix, _angle(_num(f, 1)), "deg")
    _obs(out, "wind_speed" + suffix, _speed(_num(f, 3), _field(f, 4)), "m/s")
    return out


def _mtw(d: NmeaDecoder, f: list[str]) -> list[Observation]:
    # $--MTW,temperature,C
    if _field(f, 2) not in ("C", ""):
        raise DecodeError(f"MTW unit {_field(f, 2)[:4]!r} is not C")
    out: list[Observation] = []
    _obs(out, "water_temperature", _num(f, 1), "degC")
    return out


def _ms_or_knots(f: list[str], ms: int, knots: int) -> float | None:
    """MWD and MDA give wind speed twice; prefer the m/s field, else convert the knots."""
    speed = _speed(_num(f, ms), "M")
    return speed if speed is not None else _speed(_num(f, knots), "N")


def _mwd(d: NmeaDecoder, f: list[str]) -> list[Observation]:
    # $--MWD,dir,T,dir,M,speed,N,speed,M  (true wind direction and speed)
    out: list[Observation] = []
    _obs(out, "wind_direction", _angle(_num(f, 1)), "deg")
    _obs(out, "wind_speed", _ms_or_knots(f, 7, 5), "m/s")
    return out


def _mda(d: NmeaDecoder, f: list[str]) -> list[Observation]:
    # $--MDA,p inHg,I,p bar,B,air C,C,water C,C,rh %,abs hum,dew C,C,dir T,T,dir M,M,kn,N,m/s,M
    out: list[Observation] = []
    bar = _num(f, 3)
    inhg = _num(f, 1)
    if bar is not None:
        _obs(out, "pressure", round(bar * 1000.0, DECIMALS), "hPa")
    elif inhg is not None:
        _obs(out, "pressure", round(inhg * 33.8639, DECIMALS), "hPa")  # 1 inHg = 33.8639 hPa
    _obs(out, "temperature", _num(f, 5), "degC")
    _obs(out, "water_temperature", _num(f, 7), "degC")
    _obs(out, "humidity", _num(f, 9), "%")
    _obs(out, "wind_direction", _angle(_num(f, 13)), "deg")
    _obs(out, "wind_speed", _ms_or_knots(f, 19, 17), "m/s")
    return out


def _latlon(f: list[str], i: int) -> tuple[float, float] | None:
    """Fields i..i+3: ddmm.mm,N|S,dddmm.mm,E|W -> degrees; None when the fix is empty."""
    lat_text, ns, lon_text, ew = (_field(f, i + k) for k in range(4))
    if not lat_text or not lon_text:
        return None
    lat = _degrees(lat_text, 2, 90.0)
    lon = _degrees(lon_text, 3, 180.0)
    if ns not in ("N", "S") or ew not in ("E", "W"):
        raise DecodeError(f"bad hemisphere {ns[:2]!r}/{ew[:2]!r}")
    return (-lat if ns == "S" else lat, -lon if ew == "W" else lon)


def _degrees(text: str, width: int, limit: float) -> float:
    try:
        degrees = int(text[:width])
        minutes = float(text[width:])
    except ValueError:
        raise DecodeError(f"bad coordinate {text[:16]!r}") from None
    if not text[:width].isdigit() or not 0.0 <= minutes < 60.0:
        raise DecodeError(f"bad coordinate {text[:16]!r}")
    value = degrees + minutes / 60.0
    if value > limit:
        raise DecodeError(f"coordinate {text[:16]!r} out of range")
    return round(value, 7)  # 1e-7 deg is about 1 cm


def _position(fix: tuple[float, float] | None) -> list[Observation]:
    if fix is None:
        return []
    return [Observation("latitude", fix[0], "deg"), Observation("longitude", fix[1], "deg")]


def _gga(d: NmeaDecoder, f: list[str]) -> list[Observation]:
    # $--GGA,time,lat,N,lon,E,quality,...  quality 0 = no fix
    fix = _latlon(f, 2)
    if _field(f, 6) in ("", "0"):
        return []
    return _position(fix)


def _rmc(d: NmeaDecoder, f: list[str]) -> list[Observation]:
    # $--RMC,time,A|V,lat,N,lon,E,...  status V = navigation receiver warning
    fix = _latlon(f, 3)
    if _field(f, 2) != "A":
        return []
    return _position(fix)


_HANDLERS: dict[str, Callable[[NmeaDecoder, list[str]], list[Observation]]] = {
    "MWV": _mwv,
    "MTW": _mtw,
    "MWD": _mwd,
    "MDA": _mda,
    "GGA": _gga,
    "RMC": _rmc,
}


def checksum(body: str) -> str:
    """The two hex digits for `body` (the text between `$` and `*`); used by the simulator."""
    value = 0
    for ch in body.encode("ascii"):
        value ^= ch
    return f"{value:02X}"


def compile_nmea(doc: Section) -> NmeaDecoder:
    """Build an NmeaDecoder from a profile file; problems are recorded with their paths."""
    head = doc.section("profile")
    sentences = head.strings("sentences", SUPPORTED)
    for i, kind in enumerate(sentences):
        if kind not in SUPPORTED:
            head.problem(
                f"sentences[{i}]", f'unsupported sentence "{kind}"; known: {", ".join(SUPPORTED)}'
            )
    require = head.flag("require_checksum", True)
    head.ignore("name", "protocol", "description")
    head.finish()
    rename = doc.mapping("rename", str, "a quantity name")
    points = compile_xdr(doc)
    attributes = doc.mapping("attributes", str, "a string")
    return NmeaDecoder(frozenset(sentences), require, rename, points, attributes)
