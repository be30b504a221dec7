"""A profile's decoding compiled for one device's block reads: a poll's register lists in,
Observations out, without building the {kind: {address: value}} table.

`Recipe(decoder, blocks).decode(values, params)` returns exactly what
`decoder.decode(recipe.registers(values), params)` returns, or raises exactly what it raises:
that is its contract, and tests hold the two equal over every shipped profile, its examples,
random profiles and hostile register values. It gets there in two ways:
  * the compiled path, for profiles whose points are all one register or one bit (u16, i16,
    bool; `decimals_from` allowed), the common case. Each point's block and offset, byte
    order, scale, decimal places and range are worked out once, here, into one straight-line
    Python function for the profile, so that a poll does only its arithmetic and builds the
    Observations (the per-point lookups, branches and dicts of the plain decoder were most of
    the gateway's own CPU per Modbus request);
  * the plain decoder, for everything else: profiles with 32-bit values or bit fields, and any
    poll the compiled path does not take as it is (a value that is not an int in range, a
    list of the wrong length, any decode error). Errors are therefore always worded, and
    chosen in the same order, by drivers.modbus.decode.

The generated source holds only names it makes up and integers; the profile's strings and
floats reach the function as bound constants, never as source text. Pure, like the decoder:
no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.plan import Block
from drivers.modbus.points import Point, inferred_decimals
from gateway.errors import DecodeError
from gateway.model import Observation, Value

_COMPILED_TYPES = frozenset({"u16", "i16", "bool"})
_LIMIT = {"coil": 1, "discrete": 1, "holding": 0xFFFF, "input": 0xFFFF}
_MEMO = 256  # scaled values kept per point (raw -> value): ~23 KB at most each
# Whatever the compiled path meets that it does not take as it is; the plain decoder decides.
_NOT_TAKEN = (DecodeError, LookupError, TypeError, ValueError, ArithmeticError)

Decode = Callable[[Sequence[Sequence[int]], Mapping[str, Value]], list[Observation]]


class Recipe:
    """A decoder and the blocks a device's poll reads, in the order the bus reads them."""

    def __init__(self, decoder: ModbusDecoder, blocks: Sequence[Block]) -> None:
        self.decoder = decoder
        self.blocks = tuple(blocks)
        self.source = ""  # the compiled function's source, for tests and curious readers
        self._compiled = self._compile()

    @property
    def compiled(self) -> bool:
        """True when polls take the compiled path (else every poll goes to the plain decoder)."""
        return self._compiled is not None

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
        if self._compiled is not None:
            try:
                return self._compiled(values, params)
            except _NOT_TAKEN:
                pass
        return self.decoder.decode(self.registers(values), params)

    # -- the compiled path -------------------------------------------------------------------
    def _compile(self) -> Decode | None:
        points, derived = self.decoder.points, self.decoder.derived
        index = {p.name: i for i, p in enumerate(points)}
        if (
            not points
            or len(index) != len(points)
            or any(p.type not in _COMPILED_TYPES for p in points)
            or any(p.decimals_from and p.decimals_from not in index for p in points)
            or any(d.point not in index for d in derived)
        ):
            return None
        # (kind, address) -> (block, offset) in the last block that reads it (see registers).
        where: dict[tuple[str, int], tuple[int, int]] = {}
        for i, b in enumerate(self.blocks):
            for address in range(b.address, b.end):
                where[(b.kind, address)] = (i, address - b.address)
        if any((p.kind, p.address) not in where for p in points):
            return None
        source = _Source(self.decoder)
        source.line(f"if len(values) != {len(self.blocks)}: raise ValueError")
        for i, b in enumerate(self.blocks):
            source.line(f"b{i} = values[{i}]")
            source.line(f"if len(b{i}) != {int(b.count)}: raise ValueError")
        # Raw values first, all of them, as the plain decoder: decimals may come from a later
        # point, and its errors come in that order.
        for j, p in enumerate(points):
            source.raw(j, p, *where[(p.kind, p.address)])
        for j, p in enumerate(points):
            source.value(j, p, index[p.decimals_from] if p.decimals_from else -1)
        emitted = ", ".join(source.observation(j, p) for j, p in enumerate(points) if p.emit)
        source.line(f"out = [{emitted}]")
        if derived:
            names = [d.point for d in derived]
            by_name = ", ".join(f"{source.const(n)}: n{index[n]}" for n in names)
            flags = ", ".join(f"{source.const(n)}: ok{index[n]}" for n in names)
            source.line(f"out += derive({{{by_name}}}, {{{flags}}}, params)")
        source.line("return out")
        self.source = source.text()
        return source.build()


class _Source:
    """The text of one compiled decode function and the constants it is bound to."""

    def __init__(self, decoder: ModbusDecoder) -> None:
        self.lines = ["def decode(values, params):"]
        self.consts: dict[str, object] = {
            "Observation": Observation,
            "new": tuple.__new__,  # an Observation in one call (gateway.model says why)
            "DecodeError": DecodeError,
            "derive": decoder.derive,
        }

    def line(self, text: str) -> None:
        self.lines.append("    " + text)

    def const(self, value: object) -> str:
        """A name the function sees `value` under (strings and floats never become source)."""
        name = f"k{len(self.consts)}"
        self.consts[name] = value
        return name

    def raw(self, j: int, p: Point, block: int, offset: int) -> None:
        """r{j}: the point's raw int (a bool point's 0/1), as drivers.modbus.decode reads it."""
        self.line(f"w = b{int(block)}[{int(offset)}]")
        self.line(f"if type(w) is not int or not 0 <= w <= {_LIMIT[p.kind]}: raise ValueError")
        if p.type != "bool" and p.byte_order != "big":
            self.line("w = (w & 255) << 8 | w >> 8")
        if p.type == "i16":
            self.line(f"r{j} = w - 65536 if w & 32768 else w")
        else:
            self.line(f"r{j} = w")

    def value(self, j: int, p: Point, source: int) -> None:
        """n{j} and ok{j}: the point's value and plausibility, as ModbusDecoder._value and
        _within give them."""
        if p.type == "bool":
            self.line(f"n{j} = r{j} != 0")
            self.line(f"ok{j} = True")
            return
        identity = p.scale == 1 and p.offset == 0
        places = p.decimals if p.decimals is not None else inferred_decimals(p.scale, p.offset)
        scale, offset = self.const(p.scale), self.const(p.offset)
        if source < 0 and identity:
            self.line(f"n{j} = r{j}")
        elif source < 0:
            # `/ 1` as the plain decoder divides by 10**0: a float even when scale is an int.
            scaled = f"round(r{j} / 1 * {scale} + {offset}, {int(places)})"
            # round() to decimal places is most of a point's cost; a sensor's raw values
            # repeat (noise at its resolution), so the results are kept, up to _MEMO of them.
            memo = self.const({})
            self.line(f"n{j} = {memo}.get(r{j})")
            self.line(f"if n{j} is None:")
            self.line(f"    n{j} = {scaled}")
            self.line(f"    if len({memo}) < {_MEMO}: {memo}[r{j}] = n{j}")
        else:
            self.line(f"shift = r{int(source)}")
            self.line("if not 0 <= shift <= 9: raise DecodeError")  # the plain decoder words it
            digits = f"{int(places)}" if p.decimals is not None else f"{int(places)} + shift"
            scaled = f"round(r{j} / 10 ** shift * {scale} + {offset}, {digits})"
            self.line(f"n{j} = r{j} if not shift else {scaled}" if identity else f"n{j} = {scaled}")
        checks = []
        if p.lo is not None:
            checks.append(f"n{j} < {self.const(p.lo)}")
        if p.hi is not None:
            checks.append(f"n{j} > {self.const(p.hi)}")
        self.line(f"ok{j} = not ({' or '.join(checks)})" if checks else f"ok{j} = True")

    def observation(self, j: int, p: Point) -> str:
        fields = f"({self.const(p.quantity)}, n{j}, {self.const(p.unit)}, None, ok{j})"
        return f"new(Observation, {fields})"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def build(self) -> Decode:
        namespace = dict(self.consts)
        # Safe to run: the text is made of our own names and integers (see the module).
        exec(compile(self.text(), "<modbus recipe>", "exec"), namespace)
        decode: Decode = namespace["decode"]  # type: ignore[assignment]  # exec's dict is untyped
        return decode
