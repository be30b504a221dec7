"""A profile's decoding prepared for one device's block reads: a poll's register lists in,
Observations out, without building the {kind: {address: value}} table.

`Recipe(decoder, blocks).decode(values, params)` returns exactly what
`decoder.decode(recipe.registers(values), params)` returns, or raises exactly what it raises:
that is its contract, and tests hold the two equal over every shipped profile and hostile
register values. It gets there in two ways:
  * the prepared path, for profiles whose points are all one register or one bit (u16, i16,
    bool; `decimals_from` allowed), the common case: each point's block and offset, byte
    order, scale, decimal places and range are worked out once here, so a poll does only the
    arithmetic and the Observations;
  * the plain decoder, for everything else: profiles with 32-bit values or bit fields, and any
    poll the prepared path does not take as it is (a value that is not an int in range, a
    list of the wrong length, any decode error). Errors are therefore always worded, and
    chosen in the same order, by drivers.modbus.decode.

Pure, like the decoder: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.plan import Block
from drivers.modbus.points import Point, inferred_decimals
from gateway.errors import DecodeError
from gateway.model import Observation, Value

_PREPARED_TYPES = frozenset({"u16", "i16", "bool"})
_LIMIT = {"coil": 1, "discrete": 1, "holding": 0xFFFF, "input": 0xFFFF}
_POWERS = tuple(10**n for n in range(10))  # decimals_from may shift by 0..9 places
# Whatever the prepared path meets that it does not take as it is; the plain decoder decides.
_NOT_TAKEN = (DecodeError, LookupError, TypeError, ValueError, ArithmeticError)

# One point's register, prepared: (block, offset, limit, swap bytes, signed, bool).
_Word = tuple[int, int, int, bool, bool, bool]
# One point's value, prepared: (bool, decimals source point or -1, scale 1 and offset 0,
# decimal places (without a decimals shift), whether they were given, scale, offset, lo, hi,
# emit, quantity, unit).
_Value = tuple[
    bool, int, bool, int, bool, float, float, float | None, float | None, bool, str, str
]  # fmt: skip


class Recipe:
    """A decoder and the blocks a device's poll reads, in the order the bus reads them."""

    def __init__(self, decoder: ModbusDecoder, blocks: Sequence[Block]) -> None:
        self.decoder = decoder
        self.blocks = tuple(blocks)
        self._sizes = tuple(b.count for b in self.blocks)
        self._words: tuple[_Word, ...] = ()
        self._values: tuple[_Value, ...] = ()
        # Derived quantities read a point's value and flag by name.
        self._derived_from: dict[str, int] = {}
        self.prepared = self._prepare()

    def registers(self, values: Sequence[Sequence[int]]) -> dict[str, dict[int, int]]:
        """The plain decoder's input for one poll's lists, one per block: a later block's
        value for an address wins, as when the lists are merged in reading order."""
        data: dict[str, dict[int, int]] = {}
        for b, got in zip(self.blocks, values, strict=True):
            data.setdefault(b.kind, {}).update(zip(range(b.address, b.end), got, strict=True))
        return data

    def decode(
        self, values: Sequence[Sequence[int]], params: Mapping[str, Value]
    ) -> list[Observation]:
        """Observations of one poll, `values` holding one list per block (see the module)."""
        if self.prepared:
            try:
                return self._decode(values, params)
            except _NOT_TAKEN:
                pass
        return self.decoder.decode(self.registers(values), params)

    # -- the prepared path -------------------------------------------------------------------
    def _prepare(self) -> bool:
        """Work out each point's steps; False when this profile goes to the plain decoder."""
        points, derived = self.decoder.points, self.decoder.derived
        by_name = {p.name: i for i, p in enumerate(points)}
        if (
            not points
            or len(by_name) != len(points)
            or any(p.type not in _PREPARED_TYPES for p in points)
            or any(p.decimals_from and p.decimals_from not in by_name for p in points)
            or any(d.point not in by_name for d in derived)
        ):
            return False
        # (kind, address) -> (block, offset) in the last block that reads it (see registers).
        where: dict[tuple[str, int], tuple[int, int]] = {}
        for i, b in enumerate(self.blocks):
            for address in range(b.address, b.end):
                where[(b.kind, address)] = (i, address - b.address)
        if any((p.kind, p.address) not in where for p in points):
            return False
        self._words = tuple(
            (
                *where[(p.kind, p.address)],
                _LIMIT[p.kind],
                p.byte_order != "big",
                p.type == "i16",
                p.type == "bool",
            )
            for p in points
        )
        self._values = tuple(_value_step(p, by_name.get(p.decimals_from, -1)) for p in points)
        self._derived_from = {d.point: by_name[d.point] for d in derived}
        return True

    def _decode(
        self, values: Sequence[Sequence[int]], params: Mapping[str, Value]
    ) -> list[Observation]:
        if len(values) != len(self._sizes) or any(
            len(v) != n for v, n in zip(values, self._sizes, strict=True)
        ):
            raise ValueError("not one list per block, of the block's length")
        # Raw values first, all of them: a point's decimals may come from a later point.
        raws: list[int] = []
        for block, at, limit, swap, signed, is_bool in self._words:
            word = values[block][at]
            if type(word) is not int or not 0 <= word <= limit:
                raise ValueError("not a register value as the link reads them")
            if is_bool:
                raws.append(word)
            elif swap:
                word = (word & 0xFF) << 8 | word >> 8
                raws.append(word - 0x10000 if signed and word & 0x8000 else word)
            else:
                raws.append(word - 0x10000 if signed and word & 0x8000 else word)
        out: list[Observation] = []
        results: list[Value] = []
        flags: list[bool] = []
        value: Value
        for raw, step in zip(raws, self._values, strict=True):
            is_bool, source, identity, places, given, scale, add, lo, hi, emit, q, u = step
            if is_bool:
                value, ok = bool(raw), True
            else:
                number: int | float
                shift = 0
                if source >= 0:
                    shift = raws[source]  # an int: a bool point's raw is its 0/1 here
                    if not 0 <= shift <= 9:
                        raise DecodeError("decimals out of range")  # the plain decoder words it
                if identity and not shift:
                    number = raw
                else:
                    number = round(
                        raw / _POWERS[shift] * scale + add, places if given else places + shift
                    )
                value = number
                ok = not ((lo is not None and number < lo) or (hi is not None and number > hi))
            results.append(value)
            flags.append(ok)
            if emit:
                out.append(Observation(q, value, u, None, ok))
        if self._derived_from:
            named = self._derived_from
            out += self.decoder.derive(
                {name: results[i] for name, i in named.items()},
                {name: flags[i] for name, i in named.items()},
                params,
            )
        return out


def _value_step(p: Point, source: int) -> _Value:
    given = p.decimals is not None
    places = p.decimals if p.decimals is not None else inferred_decimals(p.scale, p.offset)
    return (
        p.type == "bool", source if p.decimals_from else -1, p.scale == 1 and p.offset == 0,
        places, given, p.scale, p.offset, p.lo, p.hi, p.emit, p.quantity, p.unit,
    )  # fmt: skip
