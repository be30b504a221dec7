"""Table-driven Modbus decoding: a profile's points + register values in, Observations out.

Pure: no I/O, no clock, no logging; only gateway.errors.DecodeError escapes, whatever the input.
The same tables also encode values into registers for the simulator (`encode`), so the
simulator serves exactly what the decoder expects.

Native input of `decode`: {kind: {address: value}} with kind in coil/discrete/holding/input
(coils and discrete inputs as 0/1). Text forms accepted by `parse_input` (`gateway decode`,
[[example]] vectors):

    holding:5=8300,6=251            explicit kind:address=value pairs; several groups may be
    holding:0=52 input:0=0x1F       separated by spaces or ';' (decimal or 0x-hex values)
    0x0002 0x005A                   a plain register list, consecutive from the lowest address
                                    of the profile's first point's kind
    rtu:01 03 04 00 02 00 5A DB C8  an RTU response frame (CRC checked), registers placed from
                                    that same lowest address of the function's kind
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drivers.modbus import rtu
from drivers.modbus.points import BIT_KINDS, KINDS, Derived, Point, Trigger, inferred_decimals
from gateway.errors import DecodeError
from gateway.model import Observation, Value

Registers = Mapping[str, Mapping[int, int]]
_FUNCTION_KIND = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_PAIR = re.compile(r"^(\d+|0x[0-9a-fA-F]+)=(-?\d+|0x[0-9a-fA-F]+)$")
_STRUCT = {"u32": ">I", "i32": ">i", "f32": ">f"}
_ONE_WORD = frozenset({"u16", "i16", "bool"})  # types `_one_word` decodes
_LIMIT = {"coil": 1, "discrete": 1, "holding": 0xFFFF, "input": 0xFFFF}


def _number(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _words(point: Point, words: Sequence[int]) -> bytes:
    """Registers -> big-endian bytes in value order, undoing the device's word/byte order."""
    ordered = list(words) if point.word_order == "big" else list(reversed(words))
    out = bytearray()
    for w in ordered:
        hi, lo = w >> 8, w & 0xFF
        out += bytes((hi, lo) if point.byte_order == "big" else (lo, hi))
    return bytes(out)


def _unwords(point: Point, data: bytes) -> list[int]:
    words = []
    for i in range(0, len(data), 2):
        a, b = data[i], data[i + 1]
        words.append((a << 8 | b) if point.byte_order == "big" else (b << 8 | a))
    return words if point.word_order == "big" else list(reversed(words))


@dataclass(frozen=True)
class ModbusDecoder:
    """A compiled profile: decode registers, parse text input, encode values for the sim."""

    points: tuple[Point, ...]
    derived: tuple[Derived, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    protocol: str = "modbus"
    attributes: Mapping[str, str] = field(default_factory=dict)

    # -- what to read ------------------------------------------------------------------
    def spans(self) -> list[tuple[str, int, int]]:
        """(kind, address, count) of every point, emitted or not, for the planner."""
        return [(p.kind, p.address, p.count) for p in self.points]

    @property
    def channels(self) -> dict[int, int]:
        """Relay channel -> coil address (empty for sensors)."""
        return {p.channel: p.address for p in self.points if p.channel}

    @property
    def params(self) -> tuple[str, ...]:
        """Device parameters the derived quantities need."""
        return tuple(sorted({d.param for d in self.derived}))

    def _first(self, kind: str | None = None) -> tuple[str, int]:
        kind = kind or self.points[0].kind
        addresses = [p.address for p in self.points if p.kind == kind]
        if not addresses:
            raise DecodeError(f"this profile reads no {kind} values")
        return kind, min(addresses)

    # -- text input --------------------------------------------------------------------
    def parse_input(self, text: str) -> dict[str, dict[int, int]]:
        text = text.strip()
        if not text:
            raise DecodeError("empty input; expected e.g. holding:0=52 or a register list")
        if text.lower().startswith("rtu:"):
            return self._parse_rtu(text[4:])
        if ":" in text or "=" in text:
            return self._parse_pairs(text)
        kind, start = self._first()
        values = {}
        for i, item in enumerate(text.replace(",", " ").split()):
            try:
                values[start + i] = _number(item)
            except ValueError:
                raise DecodeError(f"register list item {i + 1} {item!r} is not a number") from None
        return self._checked({kind: values})

    def _parse_pairs(self, text: str) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for group in text.replace(";", " ").split():
            kind, sep, body = group.partition(":")
            if not sep:
                raise DecodeError(f"{group!r}: expected kind:address=value (e.g. holding:5=8300)")
            if kind not in KINDS:
                raise DecodeError(f"unknown register kind {kind!r} (expected {', '.join(KINDS)})")
            for pair in body.split(","):
                match = _PAIR.match(pair.strip())
                if not match:
                    raise DecodeError(f"{kind}: expected address=value, got {pair!r}")
                out.setdefault(kind, {})[_number(match[1])] = _number(match[2])
        return self._checked(out)

    def _parse_rtu(self, text: str) -> dict[str, dict[int, int]]:
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise DecodeError(f"rtu: not hex bytes: {text.strip()!r}") from None
        if len(data) < 5:
            raise DecodeError(f"rtu: frame too short ({len(data)} bytes)")
        if not rtu.crc_ok(data):
            got, want = data[-2] | data[-1] << 8, rtu.crc16(data[:-2])
            raise DecodeError(f"rtu: CRC mismatch (frame 0x{got:04X}, computed 0x{want:04X})")
        function = data[1]
        if function & 0x80:
            raise DecodeError(f"rtu: exception response, code {data[2]}")
        if function not in _FUNCTION_KIND:
            raise DecodeError(f"rtu: function {function} is not a read (1-4)")
        body = data[3:-2]
        if data[2] != len(body):
            raise DecodeError(f"rtu: byte count {data[2]} but {len(body)} data bytes")
        kind, start = self._first(_FUNCTION_KIND[function])
        if kind in BIT_KINDS:  # bits are packed LSB first (spec 6.1)
            bits = [(body[i // 8] >> (i % 8)) & 1 for i in range(len(body) * 8)]
            return {kind: {start + i: b for i, b in enumerate(bits)}}
        if len(body) % 2:
            raise DecodeError(f"rtu: odd register byte count {len(body)}")
        regs = [body[i] << 8 | body[i + 1] for i in range(0, len(body), 2)]
        return {kind: {start + i: r for i, r in enumerate(regs)}}

    @staticmethod
    def _checked(data: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
        for kind, values in data.items():
            for address, value in values.items():
                if not 0 <= address <= 0xFFFF:
                    raise DecodeError(f"{kind} address {address} out of 0..65535")
                if not 0 <= value <= _LIMIT[kind]:
                    raise DecodeError(f"{kind} {address}: value {value} out of 0..{_LIMIT[kind]}")
        return data

    # -- decoding ----------------------------------------------------------------------
    def _raw(self, point: Point, data: Registers) -> int | float | bool:
        table = data.get(point.kind, {})
        if not isinstance(table, Mapping):
            raise DecodeError(f"{point.kind} values must be an address -> value table")
        if point.type in _ONE_WORD:
            return self._one_word(point, table)
        for i in range(point.count):
            if point.address + i not in table:
                raise DecodeError(f"{point.kind} {point.address + i} missing (point {point.name})")
        try:
            words = [int(table[point.address + i]) for i in range(point.count)]
        except (TypeError, ValueError, OverflowError):
            raise DecodeError(f"{point.kind} values of {point.name} are not integers") from None
        limit = _LIMIT[point.kind]
        if any(not 0 <= w <= limit for w in words):
            raise DecodeError(f"{point.kind} {point.address}: value out of 0..{limit}")
        if point.type == "bool":
            return bool(words[0])
        if point.type in ("bit", "bits"):
            w = _words(point, words)
            field_value = ((w[0] << 8 | w[1]) >> point.bit) & ((1 << point.width) - 1)
            return bool(field_value) if point.type == "bit" else field_value
        if point.type == "u16":
            return int.from_bytes(_words(point, words), "big")
        if point.type == "i16":
            return int.from_bytes(_words(point, words), "big", signed=True)
        value: int | float = struct.unpack(_STRUCT[point.type], _words(point, words))[0]
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeError(f"point {point.name}: f32 is not a finite number ({value})")
        return value

    @staticmethod
    def _one_word(point: Point, table: Mapping[int, int]) -> int | bool:
        """`_raw` for a point in one register or bit, without the byte string (every poll
        decodes these); the same checks and errors."""
        try:
            word = int(table[point.address])
        except KeyError:
            missing = f"{point.kind} {point.address} missing (point {point.name})"
            raise DecodeError(missing) from None
        except (TypeError, ValueError, OverflowError):
            raise DecodeError(f"{point.kind} values of {point.name} are not integers") from None
        limit = _LIMIT[point.kind]
        if not 0 <= word <= limit:
            raise DecodeError(f"{point.kind} {point.address}: value out of 0..{limit}")
        if point.type == "bool":
            return bool(word)
        if point.byte_order != "big":
            word = (word & 0xFF) << 8 | word >> 8
        return word - 0x10000 if point.type == "i16" and word & 0x8000 else word

    def _value(self, point: Point, raws: Mapping[str, int | float | bool]) -> Value:
        raw = raws[point.name]
        if isinstance(raw, bool):
            return raw
        shift = 0
        if point.decimals_from:
            shift = int(raws[point.decimals_from])
            if not 0 <= shift <= 9:
                raise DecodeError(f"point {point.name}: decimals register holds {shift}, not 0..9")
        if point.scale == 1 and point.offset == 0 and not shift and isinstance(raw, int):
            return raw
        divisor: int = 10**shift
        value = raw / divisor * point.scale + point.offset
        places = point.decimals
        if places is None and isinstance(raw, int):
            places = inferred_decimals(point.scale, point.offset) + shift
        return round(value, places) if places is not None else value

    def decode(self, data: Registers, params: Mapping[str, Value]) -> list[Observation]:
        if not isinstance(data, Mapping):
            raise DecodeError(f"expected a register table, got {type(data).__name__}")
        raws = {p.name: self._raw(p, data) for p in self.points}
        values: dict[str, Value] = {}
        plausible: dict[str, bool] = {}
        out = []
        for p in self.points:
            values[p.name] = self._value(p, raws)
            plausible[p.name] = _within(values[p.name], p.lo, p.hi)
            if p.emit:
                out.append(Observation(p.quantity, values[p.name], p.unit, None, plausible[p.name]))
        return out + self.derive(values, plausible, params) if self.derived else out

    def derive(
        self,
        values: Mapping[str, Value],
        plausible: Mapping[str, bool],
        params: Mapping[str, Value],
    ) -> list[Observation]:
        """The derived quantities, from the points' values and flags by name."""
        out = []
        for d in self.derived:
            base = values[d.point]
            param = params.get(d.param)
            if param is None:
                raise DecodeError(f'device parameter "{d.param}" is missing (for {d.quantity})')
            if (
                isinstance(param, bool)
                or not isinstance(param, int | float)
                or not math.isfinite(param)
            ):
                raise DecodeError(f'device parameter "{d.param}" must be a number, got {param!r}')
            # Decimal places follow the operands (1000 - 830.5 = 169.5, then x0.1 = 16.95),
            # so float noise never reaches the platform.
            a, b = float(base), float(param)
            if d.op == "difference":
                result, places = b - a, max(inferred_decimals(a), inferred_decimals(b))
            elif d.op == "sum":
                result, places = a + b, max(inferred_decimals(a), inferred_decimals(b))
            else:
                result, places = a * b, inferred_decimals(a) + inferred_decimals(b)
            result = result * d.scale + d.offset
            if not math.isfinite(result):
                raise DecodeError(f"{d.quantity}: result is not a finite number")
            places = max(places + inferred_decimals(d.scale), inferred_decimals(d.offset))
            result = round(result, d.decimals if d.decimals is not None else places)
            ok = plausible[d.point] and _within(result, d.lo, d.hi)
            out.append(Observation(d.quantity, result, d.unit, None, ok))
        return out

    # -- encoding (the simulator's side) -----------------------------------------------
    def encode(self, point: Point, value: float | bool, shift: int = 0) -> list[int]:
        """Registers (or one 0/1 bit) a device would hold for `value`; inverse of decoding."""
        if point.type == "bool":
            return [1 if value else 0]
        if point.type in ("bit", "bits"):
            return [(int(value) & ((1 << point.width) - 1)) << point.bit]
        raw = (float(value) - point.offset) / point.scale * 10**shift
        if point.type == "f32":
            return _unwords(point, struct.pack(">f", raw))
        number = round(raw)
        lo, hi = {
            "u16": (0, 0xFFFF),
            "i16": (-0x8000, 0x7FFF),
            "u32": (0, 0xFFFFFFFF),
            "i32": (-0x80000000, 0x7FFFFFFF),
        }[point.type]
        number = max(lo, min(hi, number))
        size = point.count * 2
        return _unwords(point, number.to_bytes(size, "big", signed=point.type[0] == "i"))


def _within(value: Value, lo: float | None, hi: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return not ((lo is not None and value < lo) or (hi is not None and value > hi))
