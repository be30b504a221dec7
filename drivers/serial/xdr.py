"""NMEA 0183 XDR (transducer measurements): every quad decoded by its type, named by the profile.

An XDR sentence carries repeated quads `type,value,unit,name` (NMEA 0183 v4.11, XDR, with the
standard's table of transducer types and units). Instruments name their transducers freely
(`AIRTEMP`, `ENV_OUTAIR_T`, `TempAir`, `Barometer`), so a quad is decoded by its type and unit,
whatever its name: C temperature, P pressure (bars and pascals, to hPa), H humidity, U voltage,
A angle, D distance (metres, to mm); frequency, force, flow, current, salinity, volume, switch,
tachometer and generic quads have no quantity of their own and need a name in the profile.

The quantity of a quad: the profile's `[[xdr]]` entry for its type and name (exact name first,
then the entry without a name), else its type's own quantity. A quantity already taken in the
sentence gets the next free suffix, `_2`, `_3` (gateway.model: a second of a kind gets a
suffix), so two temperatures or three pressures in one sentence are all kept. Named quads are
placed first, so the quantity a profile gives a name never depends on the order of the quads.
A quad with an empty value is skipped (NMEA leaves unknown fields empty); a quad that cannot
be mapped (an unknown type or unit, or a type without a quantity that the profile does not
name) is returned as `unmapped` for the bus to count and log.
Pure: no I/O, no clock, no logging; only DecodeError escapes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gateway.errors import DecodeError
from gateway.model import Observation
from gateway.section import Section

# (type, unit) -> (the type's own quantity or "" for none, unit of the reading, factor).
# NMEA 0183 v4.11 XDR transducer table; the quantities are gateway.model's vocabulary.
XDR_UNITS: dict[tuple[str, str], tuple[str, str, float]] = {
    ("A", "D"): ("angle", "deg", 1.0),  # angular displacement, degrees
    ("C", "C"): ("temperature", "degC", 1.0),
    ("D", "M"): ("distance", "mm", 1000.0),  # linear displacement, metres -> mm
    ("F", "H"): ("", "Hz", 1.0),  # frequency
    ("G", ""): ("", "", 1.0),  # generic, no unit
    ("H", "P"): ("humidity", "%", 1.0),  # relative humidity, percent
    ("I", "A"): ("", "A", 1.0),  # current
    ("L", "S"): ("", "ppt", 1.0),  # salinity, parts per thousand
    ("N", "N"): ("", "N", 1.0),  # force
    ("P", "B"): ("pressure", "hPa", 1000.0),  # bar -> hPa
    ("P", "P"): ("pressure", "hPa", 0.01),  # Pa -> hPa
    ("R", "L"): ("", "l/s", 1.0),  # flow rate
    ("S", ""): ("", "", 1.0),  # switch or valve
    ("T", "R"): ("", "rpm", 1.0),  # tachometer
    ("U", "V"): ("voltage", "V", 1.0),
    ("V", "M"): ("", "m3", 1.0),  # volume
}
TYPES = tuple(sorted({kind for kind, _ in XDR_UNITS}))
# Converted values keep this many decimals: 1e-6 bar is 1e-3 hPa; more digits are float noise.
DECIMALS = 6
# A generic quad's unit comes off the wire into payloads: only a short plain token passes.
_GENERIC_UNIT = re.compile(r"[A-Za-z%/]{1,8}")


@dataclass(frozen=True)
class XdrPoint:
    """One profile mapping of an XDR quad (type, name) onto a quantity."""

    type: str
    name: str  # transducer name; "" matches any name of this type
    quantity: str


def decode_xdr(
    fields: list[str], points: tuple[XdrPoint, ...]
) -> tuple[list[Observation], tuple[str, ...]]:
    """(observations, unmapped quads as `type,unit,name`) of one sentence's fields (the
    address first); DecodeError when the fields are not quads or a value is not a number."""
    if (len(fields) - 1) % 4 != 0:
        raise DecodeError(f"XDR has {len(fields) - 1} fields, not a multiple of 4")
    named: list[tuple[int, str, str, float]] = []  # (position, quantity, unit, value)
    typed: list[tuple[int, str, str, float]] = []
    unmapped: list[str] = []
    for i in range(1, len(fields), 4):
        kind, text, unit, name = fields[i : i + 4]
        conversion = _conversion(kind, unit)
        if conversion is None:
            unmapped.append(_describe(kind, unit, name))
            continue
        if text == "":
            continue
        own, out_unit, factor = conversion
        value = round(_number(text, i + 1) * factor, DECIMALS)
        if not math.isfinite(value):  # 1e308 bar is no pressure
            raise DecodeError(f"field {i + 1} is out of range: {text[:16]!r}")
        chosen = _named(points, kind, name)
        if chosen:
            named.append((i, chosen, out_unit, value))
        elif own:
            typed.append((i, own, out_unit, value))
        else:
            unmapped.append(_describe(kind, unit, name))
    taken: set[str] = set()
    placed: list[tuple[int, Observation]] = []
    for i, quantity, unit, value in named + typed:
        quantity = _free(quantity, taken)
        placed.append((i, Observation(quantity, value, unit)))
    placed.sort(key=lambda p: p[0])  # the instrument's order, whoever claimed first
    return [o for _, o in placed], tuple(unmapped)


def _conversion(kind: str, unit: str) -> tuple[str, str, float] | None:
    conversion = XDR_UNITS.get((kind, unit))
    if conversion is None and kind == "G" and _GENERIC_UNIT.fullmatch(unit):
        return ("", unit, 1.0)
    return conversion


def _named(points: tuple[XdrPoint, ...], kind: str, name: str) -> str:
    """The profile's quantity for this quad: an exact name wins over a type-wide entry."""
    fallback = ""
    for p in points:
        if p.type == kind:
            if p.name == name:
                return p.quantity
            if p.name == "" and not fallback:
                fallback = p.quantity
    return fallback


def _free(quantity: str, taken: set[str]) -> str:
    """`quantity`, or with the first free suffix `_2`, `_3`, ... when the sentence has it."""
    candidate, n = quantity, 1
    while candidate in taken:
        n += 1
        candidate = f"{quantity}_{n}"
    taken.add(candidate)
    return candidate


def _number(text: str, i: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(f"field {i} is not a number: {text[:16]!r}") from None
    if not math.isfinite(value):
        raise DecodeError(f"field {i} is not a finite number: {text[:16]!r}")
    return value


def _describe(kind: str, unit: str, name: str) -> str:
    return f"{kind[:4]},{unit[:4]},{name[:24]}"


def compile_xdr(doc: Section) -> tuple[XdrPoint, ...]:
    """The profile's `[[xdr]]` table; problems are recorded with their paths."""
    points = []
    for s in doc.sections("xdr"):
        points.append(
            XdrPoint(
                type=s.text("type", choices=TYPES),
                name=s.text("name", ""),
                quantity=s.text("quantity"),
            )
        )
        s.finish()
    return tuple(points)
