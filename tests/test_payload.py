"""Golden payloads for every format, size limits, and the compact format's round trip."""

from __future__ import annotations

import json
import random
import zlib
from datetime import UTC, datetime

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Lane, Reading
from gateway.uplink import orion, wire
from gateway.uplink.payload import (
    Message as Msg,
)
from gateway.uplink.payload import (
    Target as T,
)
from gateway.uplink.payload import (
    decode_msgpack,
    encode_fiware_json,
    encode_fiware_ul,
    encode_json,
    encode_msgpack,
    iso,
    wire_bytes,
)

TARGET = T(
    "k3y",
    "gw1",
    "field",
    {
        ("paddy-01", "water_level"): "wl",
        ("paddy-01", "water_temperature"): "wt",
        ("paddy-01", "battery"): "bat",
    },
)
T0 = 1748754600.0  # 2025-06-01T05:10:00Z


def paddy(seq: int, ts: float, wl: float, wt: float, bat: float | None = None) -> list[Reading]:
    out = [
        Reading(seq, "paddy-01", "water_level", wl, "cm", ts),
        Reading(seq + 1, "paddy-01", "water_temperature", wt, "degC", ts),
    ]
    if bat is not None:
        out.append(Reading(seq + 2, "paddy-01", "battery", bat, "V", ts))
    return out


def test_fiware_json_single_is_a_flat_object_as_in_field_md():
    (msg,) = encode_fiware_json(paddy(1, T0, 5.2, 23.4, 3.61), TARGET, 65536)
    assert msg.topic == "/json/k3y/paddy-01/attrs"
    assert msg.payload == (b'{"wl":5.2,"wt":23.4,"bat":3.61,"TimeInstant":"2025-06-01T05:10:00Z"}')
    assert msg.seqs == (1, 2, 3)


def test_fiware_json_batch_is_an_array_oldest_first():
    rs = paddy(1, T0, 5.2, 23.4) + paddy(3, T0 + 600, 5.1, 23.6)
    (msg,) = encode_fiware_json(rs, TARGET, 65536)
    assert json.loads(msg.payload) == [
        {"wl": 5.2, "wt": 23.4, "TimeInstant": "2025-06-01T05:10:00Z"},
        {"wl": 5.1, "wt": 23.6, "TimeInstant": "2025-06-01T05:20:00Z"},
    ]


def test_fiware_json_unmapped_quantities_keep_their_names_and_types():
    rs = [
        Reading(1, "trap-3", "trap_state", "triggered", "", T0 + 0.25),
        Reading(2, "trap-3", "motion", True, "", T0 + 0.25),
    ]
    (msg,) = encode_fiware_json(rs, TARGET, 65536)
    assert msg.topic == "/json/k3y/trap-3/attrs"
    assert msg.payload == (
        b'{"trap_state":"triggered","motion":true,"TimeInstant":"2025-06-01T05:10:00.250Z"}'
    )


def test_fiware_ul_groups_with_timestamps():
    rs = paddy(1, T0 - 600, 5.2, 23.4) + paddy(3, T0, 5.1, 23.6)
    (msg,) = encode_fiware_ul(rs, TARGET, 65536)
    assert msg.topic == "/ul/k3y/paddy-01/attrs"
    assert msg.payload == (
        b"2025-06-01T05:00:00Z|wl|5.2|wt|23.4#2025-06-01T05:10:00Z|wl|5.1|wt|23.6"
    )


def test_fiware_ul_escapes_separators_in_text():
    (msg,) = encode_fiware_ul([Reading(1, "t", "note", "a|b#c", "", T0)], TARGET, 65536)
    # UltraLight's separators take the one rule's fullwidth forms (U+FF5C, U+FF03)
    assert msg.payload.decode() == "2025-06-01T05:10:00Z|note|a" + "\uff5cb\uff03c"
    assert orion.restore(msg.payload.decode()) == "2025-06-01T05:10:00Z|note|a|b#c"


def test_generic_json_carries_seq_unit_and_sync_flag():
    rs = [Reading(7, "buoy", "wind_speed", 3.5, "m/s", T0, synced=False)]
    (msg,) = encode_json(rs, TARGET, 65536)
    assert msg.topic == "field/gw1/buoy"
    assert json.loads(msg.payload) == [
        {
            "seq": 7,
            "quantity": "wind_speed",
            "value": 3.5,
            "unit": "m/s",
            "time": "2025-06-01T05:10:00Z",
            "synced": False,
        }
    ]


# -- implausible values: forwarded with their flag in every format --------------------------
def flat(seq: int, ts: float, bat: float, plausible: bool) -> Reading:
    return Reading(seq, "paddy-01", "battery", bat, "V", ts, plausible=plausible)


def test_fiware_json_flags_an_implausible_value_with_an_extra_attribute():
    rs = [*paddy(1, T0, 5.2, 23.4), flat(3, T0, 1.2, False), *paddy(4, T0 + 600, 5.1, 23.6)]
    rs.append(flat(6, T0 + 600, 3.6, True))
    (msg,) = encode_fiware_json(rs, TARGET, 65536)
    assert msg.payload == (
        b'[{"wl":5.2,"wt":23.4,"bat":1.2,"bat_implausible":true,'
        b'"TimeInstant":"2025-06-01T05:10:00Z"},'
        b'{"wl":5.1,"wt":23.6,"bat":3.6,"TimeInstant":"2025-06-01T05:20:00Z"}]'
    )


def test_fiware_ul_flags_an_implausible_value_with_an_extra_attribute():
    rs = [*paddy(1, T0, 5.2, 23.4), flat(3, T0, 1.2, False)]
    (msg,) = encode_fiware_ul(rs, TARGET, 65536)
    assert msg.payload == b"2025-06-01T05:10:00Z|wl|5.2|wt|23.4|bat|1.2|bat_implausible|true"


def test_generic_json_flags_an_implausible_value_and_leaves_plausible_ones_as_they_were():
    (msg,) = encode_json([flat(7, T0, 1.2, False), flat(8, T0 + 600, 3.6, True)], TARGET, 65536)
    assert msg.payload == (
        b'[{"seq":7,"quantity":"battery","value":1.2,"unit":"V",'
        b'"time":"2025-06-01T05:10:00Z","synced":true,"plausible":false},'
        b'{"seq":8,"quantity":"battery","value":3.6,"unit":"V",'
        b'"time":"2025-06-01T05:20:00Z","synced":true}]'
    )


def test_msgpack_carries_the_flag_in_a_column_of_its_own():
    rs = [*paddy(1, T0, 5.2, 23.4), flat(3, T0, 1.2, False), flat(4, T0 + 600, 3.6, True)]
    (msg,) = encode_msgpack(rs, TARGET, 65536)
    body = msgpack.unpackb(zlib.decompress(msg.payload), strict_map_key=False)
    assert body["ip"] == [2]
    assert [b["plausible"] for b in decode_msgpack(msg.payload)] == [True, True, False, True]
    # A batch with nothing flagged has no `ip` column: not one byte more than before.
    plain = msgpack.unpackb(
        zlib.decompress(encode_msgpack(paddy(1, T0, 5.2, 23.4), TARGET, 65536)[0].payload)
    )
    assert "ip" not in plain


def test_imported_rows_carry_their_origin_where_the_format_carries_seq():
    """Rows `gateway outbox import` took keep the (gateway, seq) that first stamped them in
    json and msgpack; our own rows carry nothing extra (not one byte more)."""
    own = Reading(7, "p1", "water_level", 5.2, "cm", T0)
    taken = Reading(8, "p1", "water_level", 5.3, "cm", T0 + 600, origin=("gw-hill", 123456))
    (msg,) = encode_json([own, taken], TARGET, 65536)
    items = json.loads(msg.payload)
    assert "origin" not in items[0]
    assert items[1]["origin"] == {"gateway": "gw-hill", "seq": 123456}
    assert items[1]["seq"] == 8  # the forwarding box's own seq stays what it is
    (packed,) = encode_msgpack([own, taken], TARGET, 65536)
    back = decode_msgpack(packed.payload)
    assert "origin" not in back[0]
    assert back[1]["origin"] == {"gateway": "gw-hill", "seq": 123456}
    (plain,) = encode_msgpack([own], TARGET, 65536)
    assert "o" not in msgpack.unpackb(zlib.decompress(plain.payload))


def test_devices_get_separate_messages_in_order():
    rs = [Reading(i, f"d{i % 2}", "q", float(i), "", T0 + i) for i in range(1, 7)]
    msgs = encode_json(rs, TARGET, 65536)
    assert [m.topic for m in msgs] == ["field/gw1/d1", "field/gw1/d0"]
    assert msgs[0].seqs == (1, 3, 5) and msgs[1].seqs == (2, 4, 6)


def test_alert_lane_is_kept_on_messages():
    rs = [Reading(1, "trap-1", "trap_state", "triggered", "", T0, lane=Lane.ALERT)]
    for enc in (encode_fiware_json, encode_fiware_ul, encode_json, encode_msgpack):
        assert enc(rs, TARGET, 65536)[0].lane == Lane.ALERT


def test_every_format_splits_to_respect_max_payload():
    rs = []
    for k in range(300):
        rs += paddy(1 + 3 * k, T0 + 600 * k, 5.0 + k / 100, 20 + k / 10, 3.6)
    for enc in (encode_fiware_json, encode_fiware_ul, encode_json, encode_msgpack):
        msgs = enc(rs, TARGET, 1024)
        assert all(len(m.payload) <= 1024 for m in msgs), enc.__name__
        assert sorted(s for m in msgs for s in m.seqs) == [r.seq for r in rs], enc.__name__


def test_msgpack_golden_day_is_compact_and_round_trips():
    rs = []
    for k in range(144):
        rs += paddy(1 + 3 * k, T0 + 600 * k, round(5.2 - 0.1 * (k % 3), 1), 23.4, 3.61)
    msgs = encode_msgpack(rs, TARGET, 65536)
    assert [m.topic for m in msgs] == ["field/gw1/mp"]
    per_reading = sum(wire_bytes(m) for m in msgs) / len(rs)
    assert per_reading < 8
    back = decode_msgpack(msgs[0].payload)
    assert [(b["seq"], b["device"], b["attr"], b["value"], b["unit"], b["time"]) for b in back] == [
        (r.seq, r.device, TARGET.attr(r.device, r.quantity), r.value, r.unit, r.ts) for r in rs
    ]


values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: round(v, 3)),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.text(max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["water_level", "battery", "trap_state"]),
            values,
            st.floats(min_value=1.7e9, max_value=1.9e9).map(lambda t: round(t, 3)),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_msgpack_round_trips_any_batch(items):
    rs = [
        Reading(i + 10, d, q, v, "u", t, s, plausible=p)
        for i, (d, q, v, t, s, p) in enumerate(items)
    ]
    (msg,) = encode_msgpack(rs, TARGET, 1 << 20)
    back = decode_msgpack(msg.payload)
    assert [b["seq"] for b in back] == [r.seq for r in rs]
    assert [b["synced"] for b in back] == [r.synced for r in rs]
    assert [b["plausible"] for b in back] == [r.plausible for r in rs]
    for b, r in zip(back, rs, strict=True):
        assert b["time"] == round(r.ts, 3)
        if isinstance(r.value, float):
            assert abs(b["value"] - r.value) <= 1e-6 * max(1, abs(r.value))
        else:
            assert b["value"] == r.value and type(b["value"]) is type(r.value)


def test_msgpack_keeps_int_and_float_apart_within_one_quantity():
    rs = [Reading(1, "d", "q", 1.5, "", T0), Reading(2, "d", "q", 3, "", T0)]
    back = decode_msgpack(encode_msgpack(rs, TARGET, 65536)[0].payload)
    assert [(b["value"], type(b["value"])) for b in back] == [(1.5, float), (3, int)]


def test_iso_format_and_wire_bytes():
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1.5) == "1970-01-01T00:00:01.500Z"
    assert iso(1.9996) == "1970-01-01T00:00:02Z"
    assert iso(86399.9996) == "1970-01-02T00:00:00Z"  # rounding carries into the next day
    assert iso(-1.5) == "1969-12-31T23:59:58.500Z"
    # Against the standard library over many times (the fast form is built from tables).
    rng = random.Random(7)
    for ts in [rng.uniform(0, 4.1e9) for _ in range(2000)] + [1.8e9 + k / 8 for k in range(80)]:
        ms = round(ts * 1000)
        when = datetime.fromtimestamp(ms // 1000, tz=UTC)
        text = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}" if ms % 1000 else "")
        assert iso(ts) == text + "Z", ts
    # PUBLISH: 1 + 1 (remaining 2+5+2+3=12) + 12, plus a 4-byte PUBACK.
    assert wire_bytes(Msg("a/b/c", b"xyz", ())) == 18
    assert wire_bytes(Msg("a/b/c", b"xyz", ()), qos=0) == 12


def test_sub_devices_inherit_their_receivers_attribute_names():
    target = T(
        "k",
        "gw",
        attributes={
            ("traps", "voltage"): "bat",
            ("traps-2", "rssi"): "sig",
            ("paddy", "voltage"): "pv",
        },
    )
    rs = [
        Reading(1, "traps-17", "voltage", 3.1, "V", T0, parent="traps"),
        Reading(2, "traps-17", "rssi", -80, "dBm", T0, parent="traps"),
        Reading(3, "traps-2", "rssi", -70, "dBm", T0, parent="traps"),
        Reading(4, "trapsx", "voltage", 3.0, "V", T0),
        # A configured device whose id merely starts with another's id and a dash is no
        # sub-device of it: it keeps its own names (identity is explicit, not a prefix).
        Reading(5, "paddy-2", "voltage", 3.3, "V", T0),
    ]
    payloads = {m.topic: json.loads(m.payload) for m in encode_fiware_json(rs, target, 65536)}
    assert payloads["/json/k/traps-17/attrs"] == {
        "bat": 3.1,
        "rssi": -80,
        "TimeInstant": "2025-06-01T05:10:00Z",
    }
    assert payloads["/json/k/traps-2/attrs"]["sig"] == -70
    assert "voltage" in payloads["/json/k/trapsx/attrs"]
    assert "voltage" in payloads["/json/k/paddy-2/attrs"]


# -- Orion-safe strings (issue 11): the one rule in every FIWARE payload ---------------------
HOSTILE = [
    "<>\"'=;()",
    "Water below 3.6 cm (transplanting depth)",
    "<script>alert('x');</script>",
    'a="b"; DROP TABLE x; -- (c)',
    "水位が低い(田植え深さ)<注意>; 'x'=\"y\"",
    "plain text, no change: 12.5 cm / 3 % & ok?",
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_fiware_json_string_readings_are_orion_safe_and_reversible(text):
    (msg,) = encode_fiware_json([Reading(1, "d", "note", text, "", T0)], TARGET, 65536)
    value = json.loads(msg.payload)["note"]
    assert orion.is_safe(value)
    assert orion.restore(value) == text
    assert len(value) == len(text)  # one character for one: clipping and limits stay honest


@pytest.mark.parametrize("text", HOSTILE[:-1])  # UltraLight cannot carry an empty field
def test_fiware_ul_string_readings_are_orion_safe_and_reversible(text):
    (msg,) = encode_fiware_ul([Reading(1, "d", "note", text, "", T0)], TARGET, 65536)
    ts, name, value = msg.payload.decode().split("|")
    assert (ts, name) == (iso(T0), "note")
    assert orion.is_safe(value) and "#" not in value
    assert orion.restore(value) == text


def test_numbers_booleans_and_the_other_formats_are_untouched():
    rs = [
        Reading(1, "d", "n", 1.5, "", T0),
        Reading(2, "d", "b", True, "", T0),
        Reading(3, "d", "s", "a=b", "", T0),
    ]
    (msg,) = encode_fiware_json(rs, TARGET, 65536)
    assert json.loads(msg.payload) == {"n": 1.5, "b": True, "s": "a\uff1db", "TimeInstant": iso(T0)}
    (msg,) = encode_json(rs, TARGET, 65536)
    assert [i["value"] for i in json.loads(msg.payload)] == [1.5, True, "a=b"]


def test_an_attribute_name_orion_refuses_is_made_safe_by_the_encoder():
    """Names the config never saw (a quantity a driver declares): Orion refuses the whole
    update for one bad attribute name; the encoder's last resort keeps the update."""
    target = T("k", "gw1", "field", {("d", "level"): "water level(cm)"})
    (msg,) = encode_fiware_json([Reading(1, "d", "level", 2.0, "", T0)], target, 65536)
    assert json.loads(msg.payload) == {"water_level_cm_": 2.0, "TimeInstant": iso(T0)}
    (msg,) = encode_fiware_ul([Reading(1, "d", "level", 2.0, "", T0)], target, 65536)
    assert msg.payload.decode() == f"{iso(T0)}|water_level_cm_|2"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["water_level", "battery", "trap_state"]),
            values | st.text(alphabet="<>\"'=;()\\\x00\u2028é水", max_size=6),
            st.sampled_from([1.8e9, 1.8e9 + 0.25, 1.8e9 + 600]),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_fiware_json_text_is_what_json_dumps_writes_for_the_measure_objects(items):
    # The encoder writes measure groups as text (speed); it must be exactly the JSON of the
    # objects FIELD.md describes, for any value the gateway carries.
    rs = [Reading(i + 1, d, q, v, "u", t, plausible=p) for i, (d, q, v, t, p) in enumerate(items)]
    target = T("k", "gw", attributes={("a", "water_level"): "wl"})
    for msg in encode_fiware_json(rs, target, 1 << 20):
        device = msg.topic.split("/")[3]
        groups: list[dict[str, object]] = []
        last: tuple[float, set[str]] | None = None
        for r in (r for r in rs if r.device == device):
            if last is None or r.ts != last[0] or r.quantity in last[1]:
                groups.append({})
                last = (r.ts, set())
            last[1].add(r.quantity)
            name = target.attr(device, r.quantity)
            groups[-1][name] = orion.safe_value(r.value)
            if not r.plausible:
                groups[-1][f"{name}_implausible"] = True
            groups[-1]["TimeInstant"] = iso(r.ts)
        # the flag keys go after the values in a group, TimeInstant last
        for g in groups:
            t = g.pop("TimeInstant")
            flags = {k: g.pop(k) for k in [k for k in g if k.endswith("_implausible")]}
            g.update(flags)
            g["TimeInstant"] = t
        body = groups[0] if len(groups) == 1 else groups
        assert msg.payload == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.slow  # over half a second: 100,000 encodes
def test_the_name_memos_stay_bounded_when_sub_devices_keep_coming() -> None:
    # Sub-device keys come off the air (trap ids, advertisers' MACs): a field of passing
    # advertisers must not grow a Target's memos for ever, and names stay right after a clear.
    target = wire.Target("key", "gw", attributes={("traps", "trap_state"): "ts"})
    for i in range(wire.MEMO_LIMIT + 10):
        device = f"traps-{i}"
        r = Reading(i + 1, device, "trap_state", "set", "", 1.0, parent="traps")
        [m] = encode_fiware_json([r], target, 4096)
        assert m.payload.startswith(b'{"ts":"set"')
    assert len(target._formed) <= wire.MEMO_LIMIT and len(target._resolved) <= wire.MEMO_LIMIT
