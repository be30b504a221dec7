"""Modbus profiles, the pure decoder, the block planner and config errors (no I/O)."""

from __future__ import annotations

import contextlib
import math
import re
import struct
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus import rtu
from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.plan import MAX_COUNT, plan
from gateway.config import loader as config
from gateway.config.profiles import BUILTIN_DIR, ProfileLibrary, load_profile
from gateway.errors import ConfigError, DecodeError, Problem
from gateway.section import Section
from tests.configs import load_config

SHIPPED = sorted((BUILTIN_DIR / "modbus").glob("*.toml"))


def compile_text(text: str) -> tuple[ModbusDecoder | None, list[Problem]]:
    from drivers.modbus import compile_profile

    problems: list[Problem] = []
    doc = Section(tomllib.loads(text), "p.toml", problems)
    doc.ignore("example")
    decoder = compile_profile(doc, "modbus")
    doc.finish()
    return (None if problems else decoder), problems


def test_every_shipped_profile_loads_without_problems() -> None:
    problems: list[Problem] = []
    profiles = ProfileLibrary().all(problems)
    assert problems == []
    names = {p.name for p in profiles if p.protocol == "modbus"}
    assert names >= {
        "urm14",
        "pressure-level",
        "sn3000-anemometer",
        "sn3000-wind-vane",
        "water-temperature",
        "sn3000-co2",
        "sn3000-pyranometer",
        "relay-4ch",
        "relay-8ch",
    }
    for p in profiles:
        if p.protocol == "modbus":
            assert any(e.readings for e in p.examples), p.name
            assert any(e.error for e in p.examples), p.name


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_attribute_is_named(path: Path) -> None:
    problems: list[Problem] = []
    profile = load_profile(path, problems)
    assert profile is not None, problems
    decoder = profile.decoder
    emitted = [p.quantity for p in decoder.points if p.emit] + [d.quantity for d in decoder.derived]
    assert sorted(decoder.attributes) == sorted(emitted)


def test_field_md_wind_vane_frames() -> None:
    # FIELD.md: request 01 03 00 00 00 02 C4 0B -> response 01 03 04 00 02 00 5A DB C8
    assert rtu.frame(1, bytes.fromhex("0300000002")) == bytes.fromhex("010300000002C40B")
    assert rtu.crc_ok(bytes.fromhex("01030400020 05ADBC8".replace(" ", "")))
    decoder = ProfileLibrary().get("sn3000-wind-vane", [], "t").decoder  # type: ignore[union-attr]
    obs = decoder.decode(decoder.parse_input("rtu:01 03 04 00 02 00 5A DB C8"), {})
    assert [(o.quantity, o.value) for o in obs] == [("wind_sector", 2), ("wind_direction", 90)]


TYPES = """
[profile]
protocol = "modbus"
kind = "holding"
[[point]]
quantity = "a"
address = 0
type = "u32"
[[point]]
quantity = "b"
address = 2
type = "i32"
word_order = "little"
[[point]]
quantity = "c"
address = 4
type = "f32"
byte_order = "little"
[[point]]
quantity = "d"
address = 6
type = "bit"
bit = 3
[[point]]
quantity = "e"
address = 6
type = "bits"
bit = 8
width = 4
[[point]]
quantity = "f"
kind = "input"
address = 0
type = "i16"
scale = 0.01
offset = -1.5
"""


def test_types_word_and_byte_orders() -> None:
    decoder, problems = compile_text(TYPES)
    assert problems == [] and decoder is not None
    f32 = struct.pack(">f", 21.5)
    data = {
        "holding": {
            0: 0x0001,
            1: 0x0002,  # u32 big word order -> 0x00010002
            2: 0xFFFE,
            3: 0xFFFF,  # i32 little word order: low word first -> 0xFFFFFFFE = -2
            4: f32[1] << 8 | f32[0],  # bytes swapped inside each register
            5: f32[3] << 8 | f32[2],
            6: 0x0A08,  # bit 3 set; bits 8..11 = 0xA
        },
        "input": {0: 0xFF9C},  # -100 * 0.01 - 1.5
    }
    values = {o.quantity: o.value for o in decoder.decode(data, {})}
    assert values == {"a": 65538, "b": -2, "c": 21.5, "d": True, "e": 10, "f": -2.5}


ONE_WORD = """
[profile]
protocol = "modbus"
kind = "holding"
[[point]]
quantity = "a"
address = 0
type = "u16"
[[point]]
quantity = "b"
address = 1
type = "i16"
[[point]]
quantity = "c"
address = 2
type = "i16"
byte_order = "little"
[[point]]
quantity = "d"
address = 3
type = "u16"
byte_order = "little"
[[point]]
quantity = "e"
kind = "coil"
address = 0
type = "bool"
"""


def test_one_register_types_in_both_byte_orders_and_their_errors() -> None:
    decoder, problems = compile_text(ONE_WORD)
    assert problems == [] and decoder is not None
    good = {"holding": {0: 0xFFFF, 1: 0x8000, 2: 0x38FF, 3: 0x3412}, "coil": {0: 1}}
    values = {o.quantity: o.value for o in decoder.decode(good, {})}
    # 0x38FF read low byte first is 0xFF38 = -200; 0x3412 swapped is 0x1234
    assert values == {"a": 65535, "b": -32768, "c": -200, "d": 0x1234, "e": True}
    holding, coil = good["holding"], good["coil"]
    bad: dict[str, dict[str, dict[int, object]]] = {
        "holding 2 missing (point c)": {"holding": {0: 1, 1: 1, 3: 1}, "coil": coil},
        "holding 1: value out of 0..65535": {"holding": {**holding, 1: 0x10000}, "coil": coil},
        "holding 0: value out of 0..65535": {"holding": {**holding, 0: -1}, "coil": coil},
        "holding values of d are not integers": {"holding": {**holding, 3: "x"}, "coil": coil},
        "coil 0: value out of 0..1": {"holding": holding, "coil": {0: 2}},
    }
    for message, data in bad.items():
        with pytest.raises(DecodeError, match=re.escape(message)):
            decoder.decode(data, {})  # type: ignore[arg-type]  # values a device never sends


def test_encode_is_the_inverse_of_decode() -> None:
    decoder, _ = compile_text(TYPES)
    assert decoder is not None
    for point, value in zip(decoder.points, (65538, -2, 21.5, True, 10, -2.5), strict=True):
        words = decoder.encode(point, value)
        data = {point.kind: {point.address + i: w for i, w in enumerate(words)}}
        single = ModbusDecoder((point,))
        assert single.decode(data, {})[0].value == value


def test_parse_input_forms_and_specific_errors() -> None:
    decoder = ProfileLibrary().get("urm14", [], "t").decoder  # type: ignore[union-attr]
    assert decoder.parse_input("holding:5=8300,6=0x00FB") == {"holding": {5: 8300, 6: 251}}
    assert decoder.parse_input("8300 251") == {"holding": {5: 8300, 6: 251}}
    cases = {
        "": "empty input",
        "holdng:5=1": "unknown register kind 'holdng'",
        "holding:5": "expected address=value",
        "8300 x": "register list item 2 'x' is not a number",
        "holding:5=70000": "holding 5: value 70000 out of 0..65535",
        "rtu:zz": "not hex bytes",
        "rtu:0c 03 02 00": "frame too short",
        "rtu:0c 03 02 20 6c 00 00": "CRC mismatch",
        "rtu:" + rtu.frame(12, bytes([0x10, 0, 5, 0, 1])).hex(): "not a read",
    }
    for text, message in cases.items():
        with pytest.raises(DecodeError, match=message.replace("(", r"\(")):
            decoder.parse_input(text)


def test_missing_or_bad_params_are_decode_errors() -> None:
    decoder = ProfileLibrary().get("urm14", [], "t").decoder  # type: ignore[union-attr]
    data = decoder.parse_input("holding:5=8300,6=251")
    with pytest.raises(DecodeError, match='"mount_height" is missing'):
        decoder.decode(data, {})
    with pytest.raises(DecodeError, match="must be a number"):
        decoder.decode(data, {"mount_height": "high"})


ALL_DECODERS = [load_profile(p, []).decoder for p in SHIPPED]  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_DECODERS), st.text(max_size=60))
def test_parse_input_raises_only_decode_error(decoder: ModbusDecoder, text: str) -> None:
    with contextlib.suppress(DecodeError):
        decoder.parse_input(text)


registers = st.dictionaries(
    st.sampled_from(["coil", "discrete", "holding", "input", "bogus"]),
    st.dictionaries(
        st.integers(-2, 12),
        st.integers(-5, 70000) | st.none() | st.floats() | st.text(max_size=2),
        max_size=12,
    )
    | st.lists(st.integers(0, 10), max_size=8)
    | st.none(),
    max_size=4,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(ALL_DECODERS),
    registers,
    st.dictionaries(st.sampled_from(["mount_height", "x"]), st.floats() | st.text(max_size=3)),
)
def test_decode_raises_only_decode_error(decoder: ModbusDecoder, data, params) -> None:  # type: ignore[no-untyped-def]
    try:
        for o in decoder.decode(data, params):
            assert not isinstance(o.value, float) or math.isfinite(o.value)
    except DecodeError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ALL_DECODERS), st.binary(max_size=300))
def test_simulated_slave_answers_any_pdu_with_a_response_or_an_exception(
    decoder: ModbusDecoder, pdu: bytes
) -> None:
    from drivers.modbus.slave import SimUnit

    unit = SimUnit(decoder, clock=lambda: 0.0)
    answer = unit.handle(pdu)
    assert answer and (answer[0] == (pdu[0] if pdu else 0) or answer[0] & 0x80)
    if answer[0] & 0x80:
        assert len(answer) == 2 and answer[1] in (1, 2, 3)


@given(st.binary(max_size=40))
def test_rtu_request_length_is_total(data: bytes) -> None:
    n = rtu.request_length(data)
    assert n is None or n == 0 or n >= 8


# -- planner ------------------------------------------------------------------------------
spans = st.lists(
    st.tuples(
        st.sampled_from(["coil", "discrete", "holding", "input"]),
        st.integers(0, 400),
        st.sampled_from([1, 1, 1, 2]),
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(spans, st.integers(0, 20), st.integers(2, 125))
def test_planner_covers_exactly_the_points_within_limits(span_list, max_gap, cap) -> None:  # type: ignore[no-untyped-def]
    limits = {k: min(cap, v) for k, v in MAX_COUNT.items()}
    blocks = plan(span_list, max_gap, limits)
    wanted = {(k, a + i) for k, a, n in span_list for i in range(n)}
    for kind, address, count in span_list:
        # every point is read whole by one block (a u32 is never split across two reads)
        assert any(
            b.kind == kind and b.address <= address and address + count <= b.end for b in blocks
        )
    for b in blocks:
        assert 1 <= b.count <= limits[b.kind]
        assert (b.kind, b.address) in wanted and (b.kind, b.end - 1) in wanted
        # unrequested stretches inside a block are at most max_gap long
        run = 0
        for a in range(b.address, b.end):
            run = 0 if (b.kind, a) in wanted else run + 1
            assert run <= max_gap
    # no block is redundant: each one is the only block that reads some point whole
    # (blocks may overlap only when overlapping points cannot fit one request)
    for b in blocks:
        others = [o for o in blocks if o is not b]
        assert any(
            not any(o.kind == k and o.address <= a and a + n <= o.end for o in others)
            for k, a, n in span_list
            if k == b.kind and b.address <= a and a + n <= b.end
        )


def test_planner_merges_adjacent_and_respects_the_register_limit() -> None:
    assert [tuple(vars(b).values()) for b in plan([("holding", 5, 1), ("holding", 6, 1)])] == [
        ("holding", 5, 2)
    ]
    assert len(plan([("holding", 0, 1), ("holding", 3, 1)], max_gap=1)) == 2
    assert len(plan([("holding", 0, 1), ("holding", 3, 1)], max_gap=2)) == 1
    many = [("holding", a, 1) for a in range(300)]
    assert [b.count for b in plan(many)] == [125, 125, 50]
    assert [b.count for b in plan([("coil", a, 1) for a in range(2500)])] == [2000, 500]


# -- bad profiles and config --------------------------------------------------------------
def test_bad_profile_problems_are_path_qualified() -> None:
    _, problems = compile_text(
        """
[profile]
protocol = "modbus"
kind = "holding"
[[point]]
quantity = "a"
address = 70000
type = "u64"
scal = 2
[[point]]
quantity = "a"
address = 1
decimals_from = "dp"
range = [5, 1]
[[point]]
quantity = "c"
kind = "coil"
type = "u16"
address = 0
[[derived]]
quantity = "lvl"
op = "diff"
point = "nope"
param = "h"
"""
    )
    assert [str(p) for p in problems] == [
        "p.toml.point[0].type: expected one of u16, i16, u32, i32, f32, bit, bits, bool; "
        'got "u64" (did you mean "u16"?)',
        "p.toml.point[0].address: expected 0..65535, got 70000",
        'p.toml.point[0].scal: unknown key (did you mean "scale"?)',
        "p.toml.point[1].range: expected [low, high] with low <= high, got [5, 1]",
        'p.toml.point[2].type: a coil is a single bit: use type = "bool", got "u16"',
        'p.toml.derived[0].op: expected one of difference, sum, product; got "diff"',
        'p.toml.point[1]: duplicate point name "a"',
        'p.toml.point[1]: quantity "a" is reported twice; add a suffix',
        'p.toml.point[1].decimals_from: no point named "dp"; known: a, c',
        'p.toml.derived[0].point: no point named "nope"; known: a, c',
    ]


def bus_toml(bus: str, device: str) -> str:
    return load_config("modbus_device", bus=bus, device=device)


@pytest.mark.parametrize(
    ("bus", "device", "message"),
    [
        (
            'transport = "modbus-rtu"\nport = "/dev/ttyUSB0"',
            'profile = "urm14"\nunit = 300',
            "buses[0].devices[0].unit: expected 1..247, got 300",
        ),
        (
            'transport = "modbus-rtu"\nport = "/dev/ttyUSB0"',
            'profile = "urm14"',
            "buses[0].devices[0].unit: required key is missing",
        ),
        (
            'transport = "modbus-tcp"\nhost = "10.0.0.2"',
            'profile = "urm14"\nunit = 256',
            "buses[0].devices[0].unit: expected 0..255, got 256",
        ),
        (
            'transport = "modbus-rtu"\nport = "/dev/ttyUSB0"\nbaud = 9601',
            'profile = "urm14"\nunit = 1',
            "buses[0].baud: expected one of 1200, 2400, 4800, 9600, 14400, 19200, 38400, "
            "57600, 115200; got 9601",
        ),
        (
            'transport = "modbus-rtu"\nport = "/dev/ttyUSB0"\nparity = "even"',
            'profile = "urm14"\nunit = 1',
            'buses[0].parity: expected one of N, E, O; got "even"',
        ),
        (
            'transport = "modbus-rtu"\nport = "/dev/ttyUSB0"\ntimeuot = 1',
            'profile = "urm14"\nunit = 1',
            'buses[0].timeuot: unknown key (did you mean "timeout"?)',
        ),
        (
            'transport = "modbus-rtu"',
            'profile = "urm14"\nunit = 1',
            "buses[0].port: required key is missing",
        ),
        (
            'transport = "modbus-tcp"\nhost = "h"\nreconnect_min = 5.0\nreconnect_max = 1.0',
            'profile = "urm14"\nunit = 1',
            "buses[0].reconnect_max: must be >= reconnect_min (5.0), got 1.0",
        ),
        (
            'transport = "modbus-tcp"\nhost = "h"',
            "unit = 1",
            "buses[0].devices[0].profile: a Modbus device needs a profile (its register map)",
        ),
        (
            'transport = "modbus-tcp"\nhost = "h"',
            'profile = "urm14"\nunit = 1\nunti = 2',
            'buses[0].devices[0].unti: unknown key (did you mean "unit"?)',
        ),
    ],
)
def test_bad_bus_and_device_keys(bus: str, device: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(bus_toml(bus, device))
    assert [str(p) for p in info.value.problems] == [message]


def test_good_config_parses_into_frozen_options() -> None:
    cfg = config.parse(
        bus_toml(
            'transport = "modbus-rtu"\nport = "/dev/ttyUSB0"\nbaud = 4800\nparity = "E"',
            'profile = "urm14"\nunit = 12\nparams = { mount_height = 1000.0 }',
        )
    )
    options = cfg.buses[0].options
    assert (options.baud, options.parity, options.retries) == (4800, "E", 1)
    assert options.gap == pytest.approx(3.5 * 11 / 4800)  # 3.5 character times
    assert cfg.buses[0].devices[0].options.unit == 12
    assert isinstance(cfg.buses[0].devices[0].decoder, ModbusDecoder)
