"""A Modbus profile's tables, read from TOML into frozen values with path-qualified problems.

A profile file (firmware-configs/modbus/<model>.toml) has:

    [profile]                 # name, protocol = "modbus", description (read by the core), plus
    kind = "holding"          # default register kind of the points (coil|discrete|holding|input)
    byte_order = "big"        # default byte order inside a register (big = high byte first)
    word_order = "big"        # default word order of 32-bit values (big = high word first)

    [[point]]                 # one value read from the device
    quantity = "distance"     # model.py vocabulary; `name` (defaults to quantity) is its id
    address = 5               # register / coil address (0-based PDU address)
    type = "u16"              # u16 i16 u32 i32 f32 | bit (with `bit`) | bits (with `bit`, `width`)
    scale = 0.1               # value = raw * scale + offset (after decimals_from)
    unit = "mm"
    attr = "dist"             # FIWARE attribute name
    range = [0.0, 5000.0]     # plausibility; outside -> flagged, not dropped
    typical = [600.0, 900.0]  # what the simulator serves (default: low part of `range`)
    decimals_from = "dp"      # divide by 10**(raw value of point "dp"), e.g. a decimals register
    emit = false              # read only to serve another point (a decimals register)
    channel = 1               # coils: relay channel number for the actuator

    [[derived]]               # computed from a point and a device parameter, no expressions
    quantity = "water_level"
    op = "difference"         # difference: param - point; sum: point + param; product: p * param
    point = "distance"
    param = "mount_height"    # per-device [buses.devices.params], in the point's unit
    scale = 0.1               # applied to the result (mm -> cm)

    [[trigger]]               # written before each poll (URM14 trigger mode)
    kind = "holding"          # holding (FC06) or coil (FC05)
    address = 8
    value = 12
    wait = 0.05               # seconds to wait before reading

This module only parses; decoding is drivers.modbus.decode.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal

from gateway.section import Section

KINDS = ("coil", "discrete", "holding", "input")
BIT_KINDS = ("coil", "discrete")
TYPES = ("u16", "i16", "u32", "i32", "f32", "bit", "bits", "bool")
WIDTH = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "bit": 1, "bits": 1, "bool": 1}
ORDERS = ("big", "little")
OPS = ("difference", "sum", "product")
REQUIRED_KIND = "\0required"  # sentinel: no [profile] kind to fall back on


@dataclass(frozen=True)
class Point:
    name: str
    quantity: str
    kind: str
    address: int
    type: str
    bit: int = 0
    width: int = 1
    byte_order: str = "big"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    decimals: int | None = None
    decimals_from: str = ""
    unit: str = ""
    attr: str = ""
    lo: float | None = None
    hi: float | None = None
    emit: bool = True
    channel: int = 0
    typical: tuple[float, float] | None = None

    @property
    def count(self) -> int:
        return WIDTH[self.type]


@dataclass(frozen=True)
class Derived:
    quantity: str
    op: str
    point: str
    param: str
    scale: float = 1.0
    offset: float = 0.0
    decimals: int | None = None
    unit: str = ""
    attr: str = ""
    lo: float | None = None
    hi: float | None = None
    typical: tuple[float, float] | None = None


@dataclass(frozen=True)
class Trigger:
    kind: str
    address: int
    value: int
    wait: float


# Cached: the decoder asks this for the same scale and offset on every poll, and the Decimal
# round trip was the largest part of decoding a register.
@functools.lru_cache(maxsize=4096)
def inferred_decimals(*numbers: float) -> int:
    """Decimal places a result needs so that 8300 * 0.1 prints 830.0, not 830.0000000001."""
    places = 0
    for n in numbers:
        if math.isfinite(n):
            exponent = Decimal(repr(n)).normalize().as_tuple().exponent
            places = max(places, -exponent if isinstance(exponent, int) else 0)
    return places


def _range(s: Section, key: str = "range") -> tuple[float | None, float | None]:
    value = s.value(key, None)
    if value is None:
        return None, None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or value[0] > value[1]
    ):
        s.problem(key, f"expected [low, high] with low <= high, got {value!r}")
        return None, None
    return float(value[0]), float(value[1])


def parse_point(s: Section, defaults: Section) -> Point:
    kind_default = defaults.raw.get("kind")
    kind = s.text("kind", kind_default if kind_default in KINDS else REQUIRED_KIND, choices=KINDS)
    if kind is REQUIRED_KIND:
        s.problem("kind", "required key is missing (or set [profile] kind)")
        kind = "holding"
    quantity = s.text("quantity", "")
    name = s.text("name", quantity)
    if not name:
        s.problem("quantity", "required key is missing (a point needs a quantity or a name)")
    default_type = "bool" if kind in BIT_KINDS else "u16"
    typ = s.text("type", default_type, choices=TYPES)
    if kind in BIT_KINDS and typ != "bool":
        s.problem("type", f'a {kind} is a single bit: use type = "bool", got "{typ}"')
    if kind not in BIT_KINDS and typ == "bool":
        s.problem("type", 'a register needs u16, i16, u32, i32, f32, bit or bits, got "bool"')
    bit = s.integer("bit", 0, lo=0, hi=15)
    width = s.integer("width", 1, lo=1, hi=16)
    if typ in ("bit", "bits") and not s.has("bit"):
        s.problem("bit", f'type "{typ}" needs the bit number (0 = least significant)')
    if typ == "bits" and bit + width > 16:
        s.problem("width", f"bit {bit} + width {width} does not fit in a 16-bit register")
    address = s.integer("address", lo=0, hi=65535)
    if address + WIDTH.get(typ, 1) - 1 > 65535:
        s.problem("address", f"a {typ} at {address} runs past register 65535")
    lo, hi = _range(s)
    emit = s.flag("emit", True)
    if emit and not quantity:
        s.problem("quantity", "an emitted point needs a quantity (or set emit = false)")
    channel = s.integer("channel", 0, lo=1, hi=256)
    if s.has("channel") and kind != "coil":
        s.problem("channel", f"only coils drive relay channels, this point is a {kind}")
    return Point(
        name=name,
        quantity=quantity,
        kind=kind,
        address=address,
        type=typ,
        bit=bit,
        width=1 if typ == "bit" else width,
        byte_order=s.text("byte_order", defaults.raw.get("byte_order", "big"), choices=ORDERS),
        word_order=s.text("word_order", defaults.raw.get("word_order", "big"), choices=ORDERS),
        scale=s.number("scale", 1.0),
        offset=s.number("offset", 0.0),
        decimals=s.integer("decimals", None, lo=0, hi=9),
        decimals_from=s.text("decimals_from", ""),
        unit=s.text("unit", ""),
        attr=s.text("attr", ""),
        lo=lo,
        hi=hi,
        emit=emit,
        channel=channel or 0,
        typical=_typical(s),
    )


def parse_derived(s: Section) -> Derived:
    lo, hi = _range(s)
    return Derived(
        quantity=s.text("quantity"),
        op=s.text("op", choices=OPS),
        point=s.text("point"),
        param=s.text("param"),
        scale=s.number("scale", 1.0),
        offset=s.number("offset", 0.0),
        decimals=s.integer("decimals", None, lo=0, hi=9),
        unit=s.text("unit", ""),
        attr=s.text("attr", ""),
        lo=lo,
        hi=hi,
        typical=_typical(s),
    )


def _typical(s: Section) -> tuple[float, float] | None:
    lo, hi = _range(s, "typical")
    return None if lo is None or hi is None else (lo, hi)


def parse_trigger(s: Section) -> Trigger:
    kind = s.text("kind", "holding", choices=("holding", "coil"))
    return Trigger(
        kind=kind,
        address=s.integer("address", lo=0, hi=65535),
        value=s.integer("value", lo=0, hi=1 if kind == "coil" else 65535),
        # URM14 datasheet: wait >= 30 ms after a trigger; cap keeps a typo from stalling a bus.
        wait=s.number("wait", 0.0, lo=0.0, hi=10.0),
    )
