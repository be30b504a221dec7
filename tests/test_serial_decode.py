"""Serial driver, pure parts: NMEA and line decoders, the framer, de-duplication, sampling."""

from __future__ import annotations

import contextlib
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial import compile_profile
from drivers.serial.events import Deduplicator, Sampler
from drivers.serial.framer import LineFramer
from drivers.serial.nmea import ChecksumError, NmeaDecoder, checksum
from drivers.serial.options import DeviceOptions
from drivers.serial.sim import sentence, trap_line
from drivers.serial.stream import DeviceStream
from gateway.config.profiles import ProfileLibrary
from gateway.contract import DeviceConfig
from gateway.errors import DecodeError, Problem
from gateway.model import Observation
from gateway.section import Section


def library_profile(name: str):  # type: ignore[no-untyped-def]
    problems: list[Problem] = []
    profile = ProfileLibrary().get(name, problems, "test")
    assert problems == []
    assert profile is not None
    return profile


def compiled(text: str, protocol: str):  # type: ignore[no-untyped-def]
    problems: list[Problem] = []
    decoder = compile_profile(Section(tomllib.loads(text), "p.toml", problems), protocol)
    return decoder, problems


def values(observations: list[Observation]) -> dict[str, object]:
    return {o.quantity: o.value for o in observations}


def test_all_profiles_load_without_problems() -> None:
    problems: list[Problem] = []
    names = {p.name for p in ProfileLibrary().all(problems)}
    assert problems == []
    assert {"buoy-nmea", "trap-receiver"} <= names


# -- NMEA ------------------------------------------------------------------------------------
NMEA = NmeaDecoder()


def test_field_md_sentences() -> None:
    assert values(NMEA.decode("$IIMWV,199,R,5.9,N,A*2E", {})) == {
        "wind_direction_relative": 199.0,
        "wind_speed_relative": 3.035,
    }
    assert NMEA.decode("$INMTW,17.9,C*1B", {}) == [Observation("water_temperature", 17.9, "degC")]


@pytest.mark.parametrize(
    ("unit", "speed", "ms"), [("M", 7.5, 7.5), ("K", 36.0, 10.0), ("N", 10.0, 5.144)]
)
def test_mwv_speed_units_become_metres_per_second(unit: str, speed: float, ms: float) -> None:
    got = values(NMEA.decode(sentence(f"WIMWV,10,T,{speed},{unit},A"), {}))
    assert got == {"wind_direction": 10.0, "wind_speed": ms}


def test_talker_does_not_matter_but_sentence_type_does() -> None:
    a = NMEA.decode(sentence("WIMWV,10,T,7.5,M,A"), {})
    b = NMEA.decode(sentence("IIMWV,10,T,7.5,M,A"), {})
    assert a == b and a
    assert NMEA.decode(sentence("IIVHW,,,,,5.0,N,,"), {}) == []
    assert NMEA.decode(sentence("PXMWV,1,T,2,M,A"), {}) == []  # proprietary, not MWV
    assert NMEA.decode("!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26", {}) == []


def test_invalid_status_and_bad_checksum() -> None:
    assert NMEA.decode(sentence("IIMWV,199,R,5.9,N,V"), {}) == []
    with pytest.raises(ChecksumError, match="sentence says 2F, content gives 2E"):
        NMEA.decode("$IIMWV,199,R,5.9,N,A*2F", {})
    with pytest.raises(DecodeError, match="unknown speed unit"):
        NMEA.decode(sentence("IIMWV,199,R,5.9,X,A"), {})


def test_southern_western_position() -> None:
    got = values(NMEA.decode(sentence("GPRMC,0,A,3330.0000,S,07030.0000,W,0,0,010125,,,A"), {}))
    assert got == {"latitude": -33.5, "longitude": -70.5}
    assert NMEA.decode(sentence("GPGGA,0,3330.0,S,07030.0,W,0,00,,,M,,M,,"), {}) == []


def test_xdr_without_a_map_uses_types_and_keeps_every_quad() -> None:
    decoder, problems = compiled('[profile]\nprotocol = "nmea"\n', "nmea")
    assert problems == []
    got = values(
        decoder.decode(sentence("WIXDR,C,21.5,C,AIR,C,9.0,C,DEW,P,101320,P,B,U,12.1,V,BAT"), {})
    )
    # A second temperature is a reading of its own (tests/test_serial_xdr.py), not dropped.
    assert got == {"temperature": 21.5, "temperature_2": 9.0, "pressure": 1013.2, "voltage": 12.1}


def test_nmea_profile_keys_are_checked_with_paths() -> None:
    _, problems = compiled(
        '[profile]\nprotocol = "nmea"\nsentences = ["MWV", "HDG"]\nrequire_checksum = "yes"\n'
        '[[xdr]]\ntype = "Q"\nquantity = "x"\nnmae = "A"\n',
        "nmea",
    )
    assert [str(p) for p in problems] == [
        'p.toml.profile.sentences[1]: unsupported sentence "HDG"; '
        "known: MWV, MTW, MWD, XDR, MDA, GGA, RMC",
        'p.toml.profile.require_checksum: expected true or false, got "yes"',
        'p.toml.xdr[0].type: expected one of A, C, D, F, G, H, I, L, N, P, R, S, T, U, V; got "Q"',
        'p.toml.xdr[0].nmae: unknown key (did you mean "name"?)',
    ]


# -- line profiles ---------------------------------------------------------------------------
def test_trap_line_has_source_and_heartbeat_has_no_state() -> None:
    trap = library_profile("trap-receiver").decoder
    event = trap.decode(trap_line("17", "TRIG", 3012, -87), {})
    assert {o.source for o in event} == {"17"}
    assert values(event) == {"trap_state": "triggered", "voltage": 3.012, "rssi": -87}
    assert values(trap.decode(trap_line("17", "HB", 2950, -101), {})) == {
        "voltage": 2.95,
        "rssi": -101,
    }


def test_regex_line_profile() -> None:
    decoder, problems = compiled(
        r"""
[profile]
protocol = "line"
regex = '^T=(?P<t>-?\d+\.\d) H=(?P<h>\d+)%$'
[[field]]
name = "t"
type = "float"
quantity = "temperature"
unit = "degC"
[[field]]
name = "h"
type = "hex"
quantity = "humidity"
unit = "%"
max = 100
""",
        "line",
    )
    assert problems == []
    got = decoder.decode("T=-3.5 H=41%", {})
    assert got == [
        Observation("temperature", -3.5, "degC"),
        Observation("humidity", 0x41, "%"),
    ]
    with pytest.raises(DecodeError, match="does not match"):
        decoder.decode("T=3 H=41%", {})


def test_line_profile_problems_name_their_paths() -> None:
    _, problems = compiled(
        """
[profile]
protocol = "line"
regex = "(?P<a>x"
source = "id"
checksum = "crc"
evnets = true
[[field]]
name = "a"
type = "enum"
[[field]]
name = "a"
type = "float"
map = { X = "y" }
""",
        "line",
    )
    assert [str(p) for p in problems] == [
        "p.toml.profile.regex: not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
        'p.toml.profile.checksum: expected one of none, xor, xor-optional; got "crc"',
        'p.toml.profile.evnets: unknown key (did you mean "events"?)',
        "p.toml.field[0].map: an enum field needs a map of tokens to values",
        'p.toml.field[1].map: only an enum field has a map (this one is "float")',
        'p.toml.field[1].name: duplicate field name "a"',
        'p.toml.profile.source: no [[field]] is named "id"',
    ]


# -- fuzzing: only DecodeError may escape, whatever the input --------------------------------
FUZZ_DECODERS = [
    NMEA,
    library_profile("buoy-nmea").decoder,
    library_profile("trap-receiver").decoder,
]
FIELD_TEXT = st.text(alphabet="0123456789.-+,ABCDEFGKMNPRSTVWXZ eE*$", max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_any_text(text: str) -> None:
    for decoder in FUZZ_DECODERS:
        with contextlib.suppress(DecodeError):
            decoder.decode(decoder.parse_input(text), {})


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["MWV", "MTW", "MWD", "XDR", "MDA", "GGA", "RMC"]),
    st.lists(FIELD_TEXT, max_size=22),
)
def test_fuzz_checksummed_sentences(kind: str, fields: list[str]) -> None:
    # A valid checksum gets the fuzz past the cheap checks into every sentence handler.
    line = sentence(",".join([f"II{kind}", *fields]))
    for decoder in FUZZ_DECODERS[:2]:
        try:
            out = decoder.decode(line, {})
        except DecodeError:
            continue
        assert all(isinstance(o.value, float) for o in out)


@settings(max_examples=300, deadline=None)
@given(st.lists(FIELD_TEXT, max_size=7), st.booleans())
def test_fuzz_trap_lines(fields: list[str], with_checksum: bool) -> None:
    body = ",".join(["TRAP", *fields])
    line = f"{body}*{checksum(body)}" if with_checksum else body
    try:
        out = FUZZ_DECODERS[2].decode(line, {})
    except DecodeError:
        return
    assert {o.quantity for o in out} <= {"trap_state", "voltage", "rssi"}


# -- framing ---------------------------------------------------------------------------------
def test_framer_resynchronises_after_an_overlong_run() -> None:
    framer = LineFramer(max_line=20)
    lines = framer.feed(b"good1\r\n" + b"x" * 50)
    lines += framer.feed(b"y" * 50 + b"\r\ngood2\n")
    lines += framer.feed(b"z" * 30 + b"\ngood3\rgood4")
    lines += framer.feed(b"\r\n")
    assert lines == [b"good1", b"good2", b"good3", b"good4"]
    assert framer.overlong == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=15), st.data())
def test_framer_output_does_not_depend_on_chunking(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"\n".join(parts) + b"\n"
    whole = LineFramer(16)
    expected = whole.feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunked = LineFramer(16)
    got: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += chunked.feed(stream[a:b])
    assert got == expected
    assert chunked.overlong == whole.overlong
    assert all(0 < len(line) <= 16 for line in got)


# -- de-duplication, sampling, routing -------------------------------------------------------
def test_dedup_window_runs_from_the_first_copy() -> None:
    d = Deduplicator(window=30.0)
    assert d.admit("17", "a", 0.0)
    assert not d.admit("17", "a", 10.0)
    assert not d.admit("17", "a", 29.9)  # a resend does not extend the window ...
    assert d.admit("17", "a", 30.0)  # ... so a steady repeat still passes once per window
    assert d.admit("18", "a", 30.0)  # another sender's message is its own
    assert d.dropped == 2


def test_dedup_a_change_of_state_always_passes() -> None:
    """SET, TRIG, SET, TRIG within 6 s are four events (two animals), each sent three times
    by the radio: only the back-to-back copies are duplicates."""
    d = Deduplicator(window=30.0)
    admitted = [
        content
        for t, content in enumerate(["SET", "TRIG", "SET", "TRIG"])
        for copy in range(3)
        if d.admit("17", content, 1.5 * t + 0.1 * copy)
    ]
    assert admitted == ["SET", "TRIG", "SET", "TRIG"]
    assert d.dropped == 8
    # Another trap's message between two copies does not end this trap's run of repeats.
    assert d.admit("18", "TRIG", 6.0)
    assert not d.admit("17", "TRIG", 6.1)


def test_sampler_means_directions_as_vectors_and_keeps_latest_position() -> None:
    s = Sampler(interval=10.0)
    s.add(
        [
            Observation("wind_direction", 350.0, "deg"),
            Observation("wind_speed", 4.0, "m/s"),
            Observation("latitude", 36.0, "deg"),
        ],
        0.0,
    )
    s.add(
        [
            Observation("wind_direction", 20.0, "deg"),
            Observation("wind_speed", 6.0, "m/s"),
            Observation("latitude", 36.5, "deg"),
        ],
        5.0,
    )
    assert s.flush(9.0) == []
    assert values(s.flush(10.0)) == {"wind_direction": 5.0, "wind_speed": 5.0, "latitude": 36.5}
    assert s.flush(100.0) == []  # nothing new: nothing emitted


def trap_stream(window: float | None = None) -> DeviceStream:
    return DeviceStream(
        DeviceConfig(
            id="rx",
            profile="trap-receiver",
            decoder=library_profile("trap-receiver").decoder,
            options=DeviceOptions(dedup_window=window),
        )
    )


def test_trap_resends_are_dropped_ignoring_rssi_and_keys_are_per_trap() -> None:
    stream = trap_stream()
    batch: dict[str, list[Observation]] = {}
    stream.accept(trap_line("17", "TRIG", 3012, -87), 0.0, batch)
    stream.accept(trap_line("17", "TRIG", 3012, -91), 1.0, batch)  # resend, other rssi
    stream.accept(trap_line("18", "TRIG", 3012, -87), 1.0, batch)  # another trap
    stream.accept(trap_line("17", "SET", 3012, -87), 2.0, batch)  # a new state
    # Emitted by the receiver, each observation naming its trap (the pipeline builds the key).
    assert sorted(batch) == ["rx"]
    trap17 = [o.value for o in batch["rx"] if o.source == "17" and o.quantity == "trap_state"]
    assert trap17 == ["triggered", "set"]
    assert {o.source for o in batch["rx"]} == {"17", "18"}
    assert stream.duplicates == 1


def test_dedup_window_zero_from_the_device_disables_dedup() -> None:
    stream = trap_stream(window=0.0)
    batch: dict[str, list[Observation]] = {}
    for t in (0.0, 0.1):
        stream.accept(trap_line("17", "TRIG"), t, batch)
    assert [o.value for o in batch["rx"] if o.quantity == "trap_state"] == ["triggered"] * 2


def test_trap_stream_passes_set_trig_set_trig_with_their_resends_dropped() -> None:
    stream = trap_stream()
    batch: dict[str, list[Observation]] = {}
    for t, state in enumerate(["SET", "TRIG", "SET", "TRIG"]):
        for copy, rssi in enumerate((-80, -84, -79)):  # a resend differs only in rssi
            stream.accept(trap_line("17", state, 3012, rssi), 1.5 * t + 0.1 * copy, batch)
    states = [o.value for o in batch["rx"] if o.quantity == "trap_state"]
    assert states == ["set", "triggered", "set", "triggered"]
    assert stream.duplicates == 8
