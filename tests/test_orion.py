"""The one rule for Orion-safe strings (gateway.uplink.orion) and Orion's name rule
(gateway.config.names): hostile texts, mixtures, Japanese text, nested objects and lists."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import loader
from gateway.config.names import name_problem
from gateway.errors import ConfigError
from gateway.uplink import orion

FULLWIDTH = {"<": "\uff1c", ">": "\uff1e", '"': "\uff02", "'": "\uff07",
             "=": "\uff1d", ";": "\uff1b", "(": "\uff08", ")": "\uff09"}  # fmt: skip


def test_every_forbidden_character_has_its_fullwidth_form():
    assert set(orion.FORBIDDEN) == set(FULLWIDTH) == set("<>\"'=;()")
    for c, wide in FULLWIDTH.items():
        assert orion.safe(c) == wide
        assert orion.safe(f"a{c}b") == f"a{wide}b"
        assert orion.restore(wide) == c


def test_the_issue_texts():
    text = "Water below 3.6 cm (transplanting depth)"
    assert orion.safe(text) == "Water below 3.6 cm \uff08transplanting depth\uff09"
    text = "ERROR: command 'reload' is not allowed on this gateway; ask"
    assert orion.is_safe(orion.safe(text)) and orion.restore(orion.safe(text)) == text


def test_japanese_text_keeps_its_own_characters():
    text = "水位が低い\uff08田植え深さ\uff09"  # already fullwidth parentheses: untouched
    assert orion.safe(text) == text
    assert orion.safe("水位 < 3 cm") == "水位 \uff1c 3 cm"


def test_ultralight_separators_follow_the_same_rule():
    assert orion.safe("a|b#c", orion.UL_SEPARATORS) == "a\uff5cb\uff03c"
    assert orion.restore("a\uff5cb\uff03c") == "a|b#c"
    assert orion.safe("a|b#c") == "a|b#c"  # not for JSON: only UltraLight needs it


def test_nested_objects_and_lists_keys_included():
    value = {
        "description": "<b>low</b>",
        "names": ["a=1", "b;2", {"x(y)": "'q'"}],
        "n": 1.5,
        "ok": True,
        "none": None,
        "t": ("(1)", 2),
    }
    safe = orion.safe_value(value)
    assert orion.is_safe(safe)
    assert safe["description"] == "\uff1cb\uff1elow\uff1c/b\uff1e"
    assert safe["names"][2] == {"x\uff08y\uff09": "\uff07q\uff07"}
    assert safe["n"] == 1.5 and safe["ok"] is True and safe["none"] is None
    assert safe["t"] == ["\uff081\uff09", 2]
    assert not orion.is_safe(value)


@given(st.text())
def test_safe_is_safe_reversible_and_one_for_one(text):
    wide = {chr(ord(c) + orion.FULLWIDTH) for c in orion.FORBIDDEN + orion.UL_SEPARATORS}
    out = orion.safe(text, orion.UL_SEPARATORS)
    assert orion.is_safe(out) and "|" not in out and "#" not in out
    assert len(out) == len(text)
    if not wide & set(text):
        assert orion.restore(out) == text


@pytest.mark.parametrize(
    "name", ["wl", "waterLevel", "traps-12", "paddy_01.a:b", "x" * 256, "!$%*+,-.@[]^`{|}~"]
)
def test_names_orion_takes(name):
    assert name_problem(name) is None
    assert orion.safe_name(name) == name


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("water level", "U+0020"),
        ("wl(cm)", "( )"),
        ("a=b", "="),
        ("a/b", "/"),
        ("a#b", "#"),
        ("a?b&c", "& ?"),
        ("水位", "位 水"),  # in code point order
        ("a\tb", "U+0009"),
        ("quote'", "'"),
    ],
)
def test_names_orion_refuses(name, shown):
    why = name_problem(name)
    assert why is not None and why.startswith(f"FIWARE Orion refuses {shown} in a name")
    fixed = orion.safe_name(name)
    assert name_problem(fixed) is None and len(fixed) == len(name)


def test_empty_and_long_names():
    assert name_problem("") == "must not be empty"
    assert name_problem("x" * 257) == "longer than 256 characters"
    assert orion.safe_name("x" * 300) == "x" * 256


# -- the config refuses names Orion would refuse (FIWARE formats) ---------------------------
CONFIG = """
[gateway]
id = "site"
[uplink]
format = "{fmt}"
[[buses]]
name = "synthetic"
transport = "synthetic"
[[buses.devices]]
id = "paddy-01"
attributes = {{ water_level = "wl" }}
points = [ {{ quantity = "water_level", unit = "cm", pattern = "sine", low = 3, high = 6 }} ]
[[buses.devices]]
id = "{device}"
attributes = {{ water_level = "{attr}" }}
points = [ {{ quantity = "water_level", unit = "cm", pattern = "sine", low = 3, high = 6 }} ]
"""


def _problems(fmt: str, device: str, attr: str) -> list[str]:
    try:
        loader.parse(CONFIG.format(fmt=fmt, device=device, attr=attr))
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize("fmt", ["fiware-json", "fiware-ul"])
def test_fiware_formats_refuse_names_orion_refuses_with_their_path(fmt):
    assert _problems(fmt, "paddy-02", "waterLevel") == []
    got = _problems(fmt, "paddy(2)", "water level")
    assert got == [
        'buses[0].devices[1].id: "paddy(2)": FIWARE Orion refuses ( ) in a name (it takes '
        "printable ASCII without spaces and without < > \" ' = ; ( ) & ? / #)",
        'buses[0].devices[1].attributes.water_level: "water level": FIWARE Orion refuses '
        "U+0020 in a name (it takes printable ASCII without spaces and without "
        "< > \" ' = ; ( ) & ? / #)",
    ]
    (one,) = _problems(fmt, "田んぼ", "wl")
    assert one.startswith('buses[0].devices[1].id: "田んぼ": FIWARE Orion refuses')


def test_a_device_id_with_topic_characters_is_reported_once():
    (one,) = _problems("fiware-json", "a#b", "wl")
    assert "must not contain" in one


def test_other_formats_keep_their_names():
    """`json` and `msgpack` never reach Orion: a Japanese device id is theirs to use."""
    assert _problems("json", "田んぼ", "water level") == []
