"""NMEA XDR: every quad decoded by its type, names the profile knows refine the quantity,
repeats kept apart with a suffix, what maps to nothing counted (pure decoder and a pty bus)."""

from __future__ import annotations

import math
import tomllib

from hypothesis import given
from hypothesis import strategies as st

from drivers.serial import compile_profile
from drivers.serial.nmea import NmeaDecoder
from drivers.serial.ptyline import pty_line
from drivers.serial.sim import sentence
from drivers.serial.xdr import TYPES, decode_xdr
from gateway.errors import DecodeError, Problem
from gateway.model import Observation
from gateway.section import Section
from tests.serial_rig import bus_toml, running_bus, until_available

# The buoy profile as it was before this change: four names only.
FOUR_NAMES = """
[profile]
protocol = "nmea"
[[xdr]]
type = "C"
name = "AIRTEMP"
quantity = "temperature"
[[xdr]]
type = "C"
name = "WTEMP"
quantity = "water_temperature"
[[xdr]]
type = "P"
name = "BARO"
quantity = "pressure"
[[xdr]]
type = "H"
name = "RH"
quantity = "humidity"
"""


def decoder(text: str = FOUR_NAMES) -> NmeaDecoder:
    problems: list[Problem] = []
    built = compile_profile(Section(tomllib.loads(text), "p.toml", problems), "nmea")
    assert problems == []
    assert isinstance(built, NmeaDecoder)
    return built


def readings(observations: list[Observation]) -> list[tuple[str, object, str]]:
    return [(o.quantity, o.value, o.unit) for o in observations]


def test_quads_named_otherwise_are_decoded_by_their_type() -> None:
    line = sentence(
        "WIXDR,C,21.5,C,ENV_OUTAIR_T,H,65.2,P,HUMIDITY,P,1.0132,B,Barometer,C,20.9,C,TempAir"
    )
    assert readings(decoder().decode(line, {})) == [
        ("temperature", 21.5, "degC"),
        ("humidity", 65.2, "%"),
        ("pressure", 1013.2, "hPa"),
        ("temperature_2", 20.9, "degC"),
    ]


def test_two_temperatures_and_three_pressures_are_all_kept() -> None:
    line = sentence("WIXDR,C,21.5,C,T1,C,9.0,C,T2,P,1.0132,B,P1,P,101350,P,P2,P,1.014,B,P3")
    assert readings(decoder().decode(line, {})) == [
        ("temperature", 21.5, "degC"),
        ("temperature_2", 9.0, "degC"),
        ("pressure", 1013.2, "hPa"),
        ("pressure_2", 1013.5, "hPa"),  # pascals -> hPa
        ("pressure_3", 1014.0, "hPa"),  # bars -> hPa
    ]


def test_names_the_profile_knows_refine_the_quantity_wherever_they_stand() -> None:
    # WTEMP is water; AIRTEMP claims `temperature` although an unnamed quad comes first.
    line = sentence("WIXDR,C,9.0,C,DEW,C,17.8,C,WTEMP,C,21.5,C,AIRTEMP,C,17.9,C,WTEMP")
    assert readings(decoder().decode(line, {})) == [
        ("temperature_2", 9.0, "degC"),
        ("water_temperature", 17.8, "degC"),
        ("temperature", 21.5, "degC"),
        ("water_temperature_2", 17.9, "degC"),
    ]


def test_other_standard_types_and_named_quads_without_a_quantity_of_their_own() -> None:
    profile = FOUR_NAMES + '[[xdr]]\ntype = "F"\nname = "GEN"\nquantity = "frequency"\n'
    profile += '[[xdr]]\ntype = "G"\nquantity = "generic"\n'
    line = sentence("IIXDR,D,0.42,M,DEPTH,U,12.6,V,BATT,A,-2.5,D,PTCH,F,50.0,H,GEN,G,7,,X")
    assert readings(decoder(profile).decode(line, {})) == [
        ("distance", 420.0, "mm"),
        ("voltage", 12.6, "V"),
        ("angle", -2.5, "deg"),
        ("frequency", 50.0, "Hz"),
        ("generic", 7.0, ""),
    ]


def test_quads_that_map_to_nothing_are_returned_for_counting() -> None:
    line = sentence("IIXDR,F,50.0,H,GEN,C,21.5,C,AIR,Q,1,X,ODD,V,,M,TANK")
    got, unmapped = decoder().decode_counted(line, {})
    assert readings(got) == [("temperature", 21.5, "degC")]
    # The empty volume is an unknown value (NMEA leaves fields empty), not unmapped.
    assert unmapped == ("F,H,GEN", "Q,X,ODD")


async def test_a_bus_counts_unmapped_quads_and_emits_the_rest() -> None:
    device = '[[buses.devices]]\nid = "buoy-1"\nprofile = "buoy-nmea"\ninterval = 0\n'
    async with pty_line() as line, running_bus(bus_toml(line.port, device)) as r:
        await until_available(r.sink, "buoy-1")
        text = sentence("WIXDR,C,21.5,C,TempAir,F,50.0,H,GEN,C,22.0,C,ENV_INSIDE_T")
        await line.write((text + "\r\n").encode())
        await r.sink.wait_for(lambda s: s.values("buoy-1", "temperature_2") == [22.0])
        assert r.sink.values("buoy-1", "temperature") == [21.5]
        assert r.bus.stats()["xdr_unmapped"] == 1
        assert r.bus.stats()["decoded"] == 1


QUAD = st.tuples(
    st.sampled_from([*TYPES, "Q", ""]),
    st.one_of(st.just(""), st.just("1e308"), st.floats(allow_nan=False).map(str)),
    st.sampled_from(["C", "B", "P", "V", "D", "M", "H", "", "X"]),
    st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=",*$"), max_size=6
    ),
)


@given(st.lists(QUAD, max_size=8))
def test_fuzz_quads_every_value_kept_once_under_a_distinct_name(
    quads: list[tuple[str, ...]],
) -> None:
    fields = ["WIXDR"] + [f for quad in quads for f in quad]
    try:
        got, unmapped = decode_xdr(fields, ())
    except DecodeError:
        return
    quantities = [o.quantity for o in got]
    assert all(math.isfinite(float(o.value)) for o in got)
    assert len(quantities) == len(set(quantities))
    filled = sum(1 for _, value, _, _ in quads if value != "")
    assert len(got) + len(unmapped) <= len(quads)
    assert len(got) <= filled
