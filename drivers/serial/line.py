"""Declarative text-line profiles: one line in, observations out, no Python per device model.

A profile describes a line either as delimiter-separated fields (taken in order) or as a regular
expression with named groups, plus an optional `*hh` XOR checksum (`checksum = "xor"` requires
it, `"xor-optional"` checks it when present). Each `[[field]]` has a type (`int`, `float`,
`hex`, `str`, `enum`), an optional scale/offset/unit/plausible range and the quantity it feeds.
One field may name the `source` (a trap id behind a receiver). Event semantics (de-duplication
window, volatile quantities) are carried here as data for the bus;
the decoder itself is pure: no I/O, no clock, no state; only DecodeError escapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.errors import DecodeError
from gateway.model import Observation, Value
from gateway.section import Section

from .nmea import ChecksumError, xor_checksum

TYPES = ("int", "float", "hex", "str", "enum")
CHECKSUMS = ("none", "xor", "xor-optional")
# A source id becomes part of a device key and an MQTT topic: keep it to safe characters.
SOURCE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "str"
    quantity: str = ""
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    match: str | None = None  # the field must equal this (a line tag such as "TRAP")
    mapping: Mapping[str, str] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()  # tokens that yield no observation (a heartbeat)


@dataclass(frozen=True)
class LineDecoder:
    fields: tuple[Field, ...]
    delimiter: str = ","
    pattern: re.Pattern[str] | None = None
    checksum: str = "none"
    source: str = ""  # name of the field holding the sub-device id
    events: bool = False  # emit each message at once and de-duplicate repeats
    dedup_window: float = 30.0
    dedup_ignore: frozenset[str] = frozenset({"rssi"})
    attributes: Mapping[str, str] = field(default_factory=dict)
    protocol: str = "line"

    def parse_input(self, text: str) -> str:
        line = text.strip("\r\n")
        if not line.strip():
            raise DecodeError("empty line")
        return line

    def decode(self, data: object, params: Mapping[str, Value]) -> list[Observation]:
        if not isinstance(data, str):
            raise DecodeError(f"expected a text line, got {type(data).__name__}")
        line = data.strip()
        tag = self.fields[0].match if self.fields and self.pattern is None else None
        if tag and not line.startswith(tag + self.delimiter):
            # Resynchronise on the line's tag: noise glued to its front is not a field.
            start = line.rfind(tag + self.delimiter)
            if start > 0:
                line = line[start:]
        if self.checksum == "xor" or (self.checksum == "xor-optional" and "*" in line):
            line = _strip_checksum(line)
        tokens = self._tokens(line)
        source: str | None = None
        if self.source:
            source = tokens.get(self.source)
            if source is None or not SOURCE_ID.fullmatch(source):
                raise DecodeError(f"{self.source} {str(source)[:20]!r} is not a usable id")
        out: list[Observation] = []
        for f in self.fields:
            text = tokens.get(f.name)
            if f.match is not None:
                if text != f.match:
                    raise DecodeError(f"line does not match: {f.name} is not {f.match!r}")
                continue
            if not f.quantity or text is None or text in f.skip:
                continue
            value, plausible = _convert(f, text)
            out.append(Observation(f.quantity, value, f.unit, source, plausible))
        return out

    def _tokens(self, line: str) -> dict[str, str]:
        if self.pattern is not None:
            m = self.pattern.search(line)
            if m is None:
                raise DecodeError("line does not match the profile's pattern")
            return {k: v for k, v in m.groupdict().items() if v is not None}
        parts = line.split(self.delimiter)
        if len(parts) < len(self.fields):
            raise DecodeError(
                f"line does not match: {len(parts)} fields, expected {len(self.fields)}"
            )
        return {f.name: p.strip() for f, p in zip(self.fields, parts, strict=False)}


def _strip_checksum(line: str) -> str:
    star = line.rfind("*")
    if star < 0:
        raise DecodeError("missing checksum (*hh)")
    body = line[1:star] if line.startswith("$") else line[:star]
    given = line[star + 1 :]
    try:
        want = int(given, 16) if len(given) == 2 else -1
    except ValueError:
        want = -1
    if want < 0:
        raise DecodeError(f"malformed checksum field {given[:8]!r}")
    got = xor_checksum(body, "utf-8")
    if got != want:
        raise ChecksumError(f"bad checksum: line says {want:02X}, content gives {got:02X}")
    return body


def _convert(f: Field, text: str) -> tuple[Value, bool]:
    if f.type == "str":
        return text, True
    if f.type == "enum":
        if text not in f.mapping:
            raise DecodeError(f"{f.name} {text[:20]!r} is not one of {', '.join(f.mapping)}")
        return f.mapping[text], True
    try:
        raw: float | int = (
            int(text, 16) if f.type == "hex" else int(text) if f.type == "int" else float(text)
        )
    except ValueError:
        raise DecodeError(f"{f.name} {text[:20]!r} is not {f.type}") from None
    if raw != raw or raw in (float("inf"), float("-inf")):
        raise DecodeError(f"{f.name} {text[:20]!r} is not a finite number")
    value: float | int = raw
    if f.scale != 1.0 or f.offset != 0.0:
        value = round(raw * f.scale + f.offset, 9)
    plausible = (f.minimum is None or value >= f.minimum) and (
        f.maximum is None or value <= f.maximum
    )
    return value, plausible


def compile_line(doc: Section) -> LineDecoder:
    """Build a LineDecoder from a profile file; problems are recorded with their paths."""
    head = doc.section("profile")
    delimiter = head.text("delimiter", ",")
    regex = head.text("regex", "")
    pattern = None
    if regex:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            head.problem("regex", f"not a valid regular expression: {exc}")
    checksum = head.text("checksum", "none", choices=CHECKSUMS)
    source = head.text("source", "")
    events = head.flag("events", False)
    window = head.number("dedup_window", 30.0, lo=0.0, hi=86400.0)
    ignore = frozenset(head.strings("dedup_ignore", ("rssi",)))
    head.ignore("name", "protocol", "description")
    head.finish()
    if not delimiter:
        head.problem("delimiter", "must not be empty")
    fields = tuple(_field(s) for s in doc.sections("field", required=True))
    names = [f.name for f in fields]
    for i, name in enumerate(names):
        if name in names[:i]:
            doc.problem(f"field[{i}].name", f'duplicate field name "{name}"')
    if source and source not in names:
        head.problem("source", f'no [[field]] is named "{source}"')
    if pattern is not None:
        groups = set(pattern.groupindex)
        for i, f in enumerate(fields):
            if f.name not in groups:
                doc.problem(f"field[{i}].name", f'the regex has no group named "{f.name}"')
    attributes = doc.mapping("attributes", str, "a string")
    return LineDecoder(
        fields, delimiter, pattern, checksum, source, events, window, ignore, attributes
    )


def _field(s: Section) -> Field:
    kind = s.text("type", "str", choices=TYPES)
    mapping = s.mapping("map", str, "a string")
    f = Field(
        name=s.text("name"),
        type=kind,
        quantity=s.text("quantity", ""),
        unit=s.text("unit", ""),
        scale=s.number("scale", 1.0),
        offset=s.number("offset", 0.0),
        minimum=s.number("min", None),
        maximum=s.number("max", None),
        match=s.text("match", None),
        mapping=mapping,
        skip=frozenset(s.strings("skip", ())),
    )
    if kind == "enum" and not mapping:
        s.problem("map", "an enum field needs a map of tokens to values")
    if mapping and kind != "enum":
        s.problem("map", f'only an enum field has a map (this one is "{kind}")')
    s.finish()
    return f
