"""Payload formats: Readings -> MQTT messages (topic, payload bytes, the seqs they carry).

One encoder per format, each a pure function of the readings and a `Target` (apikey, gateway
id, topic prefix, attribute names). Encoders keep each device's readings in order, group
readings that share a timestamp, and split so no payload exceeds `max_bytes`.

- `fiware-json` (FIWARE IoT Agent JSON): `/json/<apikey>/<device>/attrs`, a flat object
  `{"wl":5.2,"TimeInstant":"2025-06-01T05:10:00Z"}`, an array of such objects for a batch.
- `fiware-ul` (UltraLight 2.0): `/ul/<apikey>/<device>/attrs`,
  `2025-06-01T05:00:00Z|wl|5.2#2025-06-01T05:10:00Z|wl|5.1`.
- `json` (generic): `<prefix>/<gateway>/<device>`, an array of
  `{"seq","quantity","value","unit","time","synced"}`.
- `msgpack` (compact, metered links): `<prefix>/<gateway>/mp`, zlib-deflated columnar
  MessagePack of a whole batch across devices (gateway.uplink.compact).
A value flagged implausible (Reading.plausible False) carries its flag in every format:
`<attr>_implausible: true` beside it in the FIWARE formats, `"plausible": false` in `json`,
the row in the `ip` column in `msgpack`.
Alert rows (ALERT lane, quantity `alert`, a JSON object as text: gateway.alerts.alert) are embedded
as objects in both JSON formats; UltraLight carries them as flat attributes
(`|alert_category|security|alert_severity|high|alert_description|...`); msgpack carries the
text as it is.
Every string the FIWARE formats put in a payload (string readings, every string of an alert
object, keys included) is Orion-safe by the one rule of gateway.uplink.orion (`< > " ' = ; ( )`
become their fullwidth forms; in UltraLight `|` and `#` too), and their attribute names are
names Orion takes (`orion.safe_name`). `json` and `msgpack` carry strings unchanged.
No I/O here; the uplink publishes what these return. Message, Target and the size helpers
live in gateway.uplink.wire and are re-exported here for callers.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from gateway.clock import iso
from gateway.model import PLAUSIBLE_OF, QUANTITY_OF, SEQ_OF, TS_OF, Lane, Reading, Value
from gateway.uplink import orion
from gateway.uplink.wire import Encoder, Message, Target, by_device, split, wire_bytes

# A Reading's fields as C-level getters, for passes over whole groups.
QUANTITY_OF, TS_OF, PLAUSIBLE_OF = QUANTITY_OF, TS_OF, PLAUSIBLE_OF
_QUANTITY_VALUE = operator.itemgetter(
    Reading._fields.index("quantity"), Reading._fields.index("value")
)
# What json.dumps writes for a finite float and an int (bool is neither: its own class).
_NUMBER_TEXT: dict[type, Callable[[Any], str]] = {float: float.__repr__, int: int.__repr__}

__all__ = [
    "ENCODERS",
    "Message",
    "Target",
    "command_topics",
    "decode_msgpack",
    "encode_fiware_json",
    "encode_fiware_ul",
    "encode_json",
    "encode_msgpack",
    "iso",
    "wire_bytes",
]


def _time_groups(readings: Sequence[Reading], target: Target) -> list[list[Reading]]:
    """Consecutive readings with one timestamp and distinct quantities form one group
    (quantities are unique per device, so their attribute names are too)."""
    if len(set(map(TS_OF, readings))) == len(readings):  # every time its own (a drain)
        return [[r] for r in readings]
    groups: list[list[Reading]] = []
    # Runs of one time found in C; a run is split only where a quantity repeats in it.
    for _, run in itertools.groupby(readings, key=TS_OF):
        g = list(run)
        if len(g) == 1 or len(set(map(QUANTITY_OF, g))) == len(g):
            groups.append(g)
            continue
        current: list[Reading] = []
        seen: set[str] = set()
        for r in g:
            if r.quantity in seen:
                groups.append(current)
                current, seen = [], set()
            current.append(r)
            seen.add(r.quantity)
        groups.append(current)
    return groups


def _names(
    device: str, readings: Sequence[Reading], target: Target, form: Callable[[str], str]
) -> dict[str, str]:
    """quantity -> `form` of its FIWARE attribute name for one device's readings (made once
    per device and quantity, Target.formed); a name Orion would refuse (one the config never
    saw) is made safe first."""
    parent = readings[0].parent if readings else None  # one device key, one parent
    return {q: target.formed(form, device, q, parent) for q in set(map(QUANTITY_OF, readings))}


def _json_key(name: str) -> str:
    """`"<name>":`, the name Orion-safe."""
    return json.dumps(orion.safe_name(name), ensure_ascii=False) + ":"


def _seqs(groups: Sequence[Sequence[Reading]]) -> tuple[int, ...]:
    return tuple(map(SEQ_OF, itertools.chain.from_iterable(groups)))


def _structured(r: Reading) -> Any:
    """An alert row's value is a JSON object in a string (gateway.alerts.alert): embed the object
    so the platform gets a structured attribute, not a string to parse again."""
    if r.lane == Lane.ALERT and r.quantity == "alert" and isinstance(r.value, str):
        try:
            return json.loads(r.value)
        except json.JSONDecodeError:
            return r.value
    return r.value


# -- FIWARE IoT Agent JSON ------------------------------------------------------------------
# A value outside its plausibility range goes out as usual plus an attribute of this suffix,
# `true`, in the same measure (`"bat":1.2,"bat_implausible":true`): measures carry no
# metadata, and the IoT Agent passes undeclared attributes on to the Context Broker.
FLAG_SUFFIX = "_implausible"


def _json_text(value: Any) -> str:
    """`value` as json.dumps writes it (compact, UTF-8 kept), numbers without the encoder:
    float and int reprs are what json.dumps writes for them (NaN and infinities never get
    here: the pipeline refuses them)."""
    cls = value.__class__
    if cls is float:
        return float.__repr__(value)
    if cls is int:
        return int.__repr__(value)
    if cls is bool:
        return "true" if value else "false"
    return json.dumps(orion.safe_value(value), separators=(",", ":"), ensure_ascii=False)


def encode_fiware_json(
    readings: Sequence[Reading], target: Target, max_bytes: int
) -> list[Message]:
    out = []
    for device, rs in by_device(readings).items():
        topic = f"/json/{target.apikey}/{device}/attrs"
        # Each attribute's `"name":` once per message: a measure group is written as text
        # (one per reading in a drain of unique times), not built as a dict to encode.
        keys = _names(device, rs, target, _json_key)
        structured = rs[0].lane == Lane.ALERT

        def render(
            groups: Sequence[Sequence[Reading]],
            keys: dict[str, str] = keys,
            structured: bool = structured,
        ) -> bytes:
            objs = []
            for g in groups:
                if len(g) == 1 and not structured:  # a drain of unique times: one per group
                    _, _, q, v, _, ts, _, _, _, plausible, _ = g[0]
                    text = keys[q] + _NUMBER_TEXT.get(v.__class__, _json_text)(v)
                    if not plausible:
                        text += f',{keys[q][:-2]}{FLAG_SUFFIX}":true'
                    objs.append(f'{{{text},"TimeInstant":"{iso(ts)}"}}')
                    continue
                if structured:
                    fields = [keys[r.quantity] + _json_text(_structured(r)) for r in g]
                else:  # a number's text without a Python call: nearly every value is one
                    fields = [
                        keys[q] + _NUMBER_TEXT.get(v.__class__, _json_text)(v)
                        for q, v in map(_QUANTITY_VALUE, g)
                    ]
                if not all(map(PLAUSIBLE_OF, g)):
                    fields += [
                        f'{keys[r.quantity][:-2]}{FLAG_SUFFIX}":true' for r in g if not r.plausible
                    ]
                objs.append(f'{{{",".join(fields)},"TimeInstant":"{iso(g[0].ts)}"}}')
            body = objs[0] if len(objs) == 1 else f"[{','.join(objs)}]"
            return body.encode()

        for chunk, payload in split(_time_groups(rs, target), render, max_bytes):
            out.append(Message(topic, payload, _seqs(chunk), rs[0].lane, device))
    return out


# -- FIWARE UltraLight 2.0 ------------------------------------------------------------------
def _ul_value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v)) if abs(v) < 1e15 else repr(v)
    return orion.safe(str(v), orion.UL_SEPARATORS)


def _ul_alert(name: str, r: Reading) -> str:
    """An alert row as flat UltraLight attributes `<name>_<field>` (UL has no objects):
    `|alert_id|...|alert_category|security|alert_severity|high|alert_description|...`; the
    GeoJSON location as `<name>_location|<lat>,<lon>` (an NGSI geo:point). Empty fields are
    left out (UltraLight refuses an empty field: the whole message would be lost)."""
    try:
        obj = json.loads(str(r.value))
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return f"|{name}|{_ul_value(r.value)}" if r.value != "" else ""
    pairs = []
    for key, v in obj.items():
        if key == "type":
            continue  # always "Alert"
        if key == "location" and isinstance(v, dict) and v.get("type") == "Point":
            lon, lat = v["coordinates"]
            v = f"{lat},{lon}"
        elif isinstance(v, dict | list):
            v = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        if v is None or v == "":
            continue
        pairs.append(f"|{orion.safe_name(f'{name}_{key}')}|{_ul_value(v)}")
    return "".join(pairs)


def _ul_pair(r: Reading, names: dict[str, str]) -> str:
    if r.lane == Lane.ALERT and r.quantity == "alert" and isinstance(r.value, str):
        return _ul_alert(names[r.quantity], r)
    pair = f"|{names[r.quantity]}|{_ul_value(r.value)}"
    return pair if r.plausible else f"{pair}|{names[r.quantity]}{FLAG_SUFFIX}|true"


def encode_fiware_ul(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    out = []
    for device, rs in by_device(readings).items():
        topic = f"/ul/{target.apikey}/{device}/attrs"
        names = _names(device, rs, target, orion.safe_name)

        def render(groups: Sequence[Sequence[Reading]], names: dict[str, str] = names) -> bytes:
            return "#".join(
                iso(g[0].ts) + "".join(_ul_pair(r, names) for r in g) for g in groups
            ).encode()

        for chunk, payload in split(_time_groups(rs, target), render, max_bytes):
            out.append(Message(topic, payload, _seqs(chunk), rs[0].lane))
    return out


# -- generic JSON ---------------------------------------------------------------------------
def _json_item(r: Reading) -> dict[str, Any]:
    item = {
        "seq": r.seq,
        "quantity": r.quantity,
        "value": _structured(r),
        "unit": r.unit,
        "time": iso(r.ts),
        "synced": r.synced,
    }
    if not r.plausible:
        item["plausible"] = False  # present only when flagged: absent means plausible
    if r.origin is not None:  # an imported row: the box and seq that first stamped it
        item["origin"] = {"gateway": r.origin[0], "seq": r.origin[1]}
    return item


def encode_json(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    out = []
    for device, rs in by_device(readings).items():
        topic = f"{target.topic_prefix}/{target.gateway_id}/{device}"

        def render(items: Sequence[Reading]) -> bytes:
            return json.dumps(
                [_json_item(r) for r in items], separators=(",", ":"), ensure_ascii=False
            ).encode()

        for chunk, payload in split(rs, render, max_bytes):
            out.append(Message(topic, payload, tuple(r.seq for r in chunk), rs[0].lane))
    return out


# -- msgpack (gateway.uplink.compact) ------------------------------------------------------
# Imported at its first use: only a config with `format = "msgpack"` loads msgpack and the
# columnar encoder (an idle daemon of another format keeps their memory).
def encode_msgpack(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    from gateway.uplink import compact

    return compact.encode_msgpack(readings, target, max_bytes)


def decode_msgpack(payload: bytes) -> list[dict[str, Any]]:
    from gateway.uplink import compact

    return compact.decode_msgpack(payload)


ENCODERS: dict[str, Encoder] = {
    "fiware-json": encode_fiware_json,
    "fiware-ul": encode_fiware_ul,
    "json": encode_json,
    "msgpack": encode_msgpack,
}


def command_topics(fmt: str, apikey: str, gateway_id: str) -> tuple[str, str]:
    """(topic the platform sends commands on, topic results go back on) — FIWARE IoT Agent."""
    transport = "ul" if fmt == "fiware-ul" else "json"
    return f"/{apikey}/{gateway_id}/cmd", f"/{transport}/{apikey}/{gateway_id}/cmdexe"
