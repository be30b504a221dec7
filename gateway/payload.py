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
  MessagePack of a whole batch across devices (see `_encode_msgpack`; `decode_msgpack` reverses
  it for consumers and tests).
No I/O here; the uplink publishes what these return.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gateway.model import Lane, Reading, Value


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    seqs: tuple[int, ...]
    lane: Lane = Lane.TELEMETRY


@dataclass(frozen=True)
class Target:
    """Where and under which names readings are published."""

    apikey: str
    gateway_id: str
    topic_prefix: str = "gateway"
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def attr(self, device: str, quantity: str) -> str:
        return self.attributes.get((device, quantity), quantity)


Encoder = Callable[[Sequence[Reading], Target, int], list[Message]]

_iso_cache: dict[float, str] = {}


def iso(ts: float) -> str:
    """ISO 8601 UTC with a `Z`; milliseconds only when the time has a fraction."""
    text = _iso_cache.get(ts)
    if text is None:
        whole = math.floor(ts)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        ms = round((ts - whole) * 1000)
        if ms == 1000:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole + 1))
        elif ms:
            text += f".{ms:03d}"
        text += "Z"
        if len(_iso_cache) > 4096:
            _iso_cache.clear()
        _iso_cache[ts] = text
    return text


def by_device(readings: Sequence[Reading]) -> dict[str, list[Reading]]:
    """Group by device, keeping each device's readings in the order given."""
    groups: dict[str, list[Reading]] = {}
    for r in readings:
        groups.setdefault(r.device, []).append(r)
    return groups


def _time_groups(readings: Sequence[Reading], target: Target) -> list[list[Reading]]:
    """Consecutive readings with one timestamp and distinct attributes form one group."""
    groups: list[list[Reading]] = []
    seen: set[str] = set()
    for r in readings:
        name = target.attr(r.device, r.quantity)
        if not groups or groups[-1][0].ts != r.ts or name in seen:
            groups.append([])
            seen = set()
        groups[-1].append(r)
        seen.add(name)
    return groups


def _split(
    items: Sequence[Any], render: Callable[[Sequence[Any]], bytes], max_bytes: int
) -> list[tuple[Sequence[Any], bytes]]:
    """Render items in as few chunks as fit `max_bytes` (halving until they do)."""
    payload = render(items)
    if len(payload) <= max_bytes or len(items) <= 1:
        return [(items, payload)]
    mid = len(items) // 2
    return _split(items[:mid], render, max_bytes) + _split(items[mid:], render, max_bytes)


def _seqs(groups: Sequence[Sequence[Reading]]) -> tuple[int, ...]:
    return tuple(r.seq for g in groups for r in g)


# -- FIWARE IoT Agent JSON ------------------------------------------------------------------
def encode_fiware_json(
    readings: Sequence[Reading], target: Target, max_bytes: int
) -> list[Message]:
    out = []
    for device, rs in by_device(readings).items():
        topic = f"/json/{target.apikey}/{device}/attrs"

        def render(groups: Sequence[Sequence[Reading]]) -> bytes:
            objs = []
            for g in groups:
                obj: dict[str, Value] = {target.attr(r.device, r.quantity): r.value for r in g}
                obj["TimeInstant"] = iso(g[0].ts)
                objs.append(obj)
            body = objs[0] if len(objs) == 1 else objs
            return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

        for chunk, payload in _split(_time_groups(rs, target), render, max_bytes):
            out.append(Message(topic, payload, _seqs(chunk), rs[0].lane))
    return out


# -- FIWARE UltraLight 2.0 ------------------------------------------------------------------
_UL_FORBIDDEN = str.maketrans({c: "_" for c in "|#<>\"'=;()&"})


def _ul_value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v)) if abs(v) < 1e15 else repr(v)
    return str(v).translate(_UL_FORBIDDEN)


def encode_fiware_ul(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    out = []
    for device, rs in by_device(readings).items():
        topic = f"/ul/{target.apikey}/{device}/attrs"

        def render(groups: Sequence[Sequence[Reading]]) -> bytes:
            return "#".join(
                iso(g[0].ts)
                + "".join(f"|{target.attr(r.device, r.quantity)}|{_ul_value(r.value)}" for r in g)
                for g in groups
            ).encode()

        for chunk, payload in _split(_time_groups(rs, target), render, max_bytes):
            out.append(Message(topic, payload, _seqs(chunk), rs[0].lane))
    return out


# -- generic JSON ---------------------------------------------------------------------------
def encode_json(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    out = []
    for device, rs in by_device(readings).items():
        topic = f"{target.topic_prefix}/{target.gateway_id}/{device}"

        def render(items: Sequence[Reading]) -> bytes:
            return json.dumps(
                [
                    {
                        "seq": r.seq,
                        "quantity": r.quantity,
                        "value": r.value,
                        "unit": r.unit,
                        "time": iso(r.ts),
                        "synced": r.synced,
                    }
                    for r in items
                ],
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode()

        for chunk, payload in _split(rs, render, max_bytes):
            out.append(Message(topic, payload, tuple(r.seq for r in chunk), rs[0].lane))
    return out


# -- compact columnar MessagePack -----------------------------------------------------------
def _exponent(values: Sequence[float]) -> int | None:
    """Smallest decimal exponent (0..6) that makes every value an integer, else None."""
    for e in range(7):
        scale = 10**e
        if any(abs(v) * scale >= 2**53 for v in values):
            return None  # beyond exact float integers: sent as plain floats instead
        if all(abs(v * scale - round(v * scale)) < 1e-6 * max(1.0, abs(v * scale)) for v in values):
            return e
    return None


def _encode_msgpack_body(readings: Sequence[Reading], target: Target) -> bytes:
    """Columnar layout (all integers small after deltas, so deflate shrinks it further):

    g: gateway id; d/q/u: tables of device, quantity (attribute) and unit names;
    s0, t0: first seq and first time (s); ds, dt: per-row deltas of seq and time (time in
    units of 1/tr s); di, qi: per-row indices into d and q; e: per-quantity decimal exponent;
    v: per-row value as the delta from the previous value of the same (device, quantity),
    scaled by 10**e; x: {row: value} for values that are not numbers; ns: rows not synced.
    """
    devices: dict[str, int] = {}
    names: dict[str, int] = {}
    units: list[str] = []
    numeric: dict[int, list[float]] = {}
    for r in readings:
        devices.setdefault(r.device, len(devices))
        qi = names.setdefault(target.attr(r.device, r.quantity), len(names))
        if qi == len(units):
            units.append(r.unit)
        if isinstance(r.value, int | float) and not isinstance(r.value, bool):
            numeric.setdefault(qi, []).append(float(r.value))
    exps = [(_exponent(numeric[q]) if q in numeric else 0) for q in range(len(names))]
    whole_seconds = all(float(r.ts).is_integer() for r in readings)
    tr = 1 if whole_seconds else 1000
    s0, t0 = readings[0].seq, round(readings[0].ts * tr)
    di, qi_col, ds, dt, vs = [], [], [], [], []
    extra: dict[int, Value] = {}
    unsynced = []
    last_seq, last_t = s0, t0
    last_v: dict[tuple[int, int], int] = {}
    for i, r in enumerate(readings):
        d = devices[r.device]
        q = names[target.attr(r.device, r.quantity)]
        di.append(d)
        qi_col.append(q)
        ds.append(r.seq - last_seq)
        t = round(r.ts * tr)
        dt.append(t - last_t)
        last_seq, last_t = r.seq, t
        e = exps[q]
        if (
            isinstance(r.value, bool)
            or not isinstance(r.value, int | float)
            or e is None
            or (isinstance(r.value, int) and e)  # keep the int type on the way back
        ):
            extra[i] = r.value
            vs.append(0)
        else:
            scaled = round(r.value * 10**e)
            vs.append(scaled - last_v.get((d, q), 0))
            last_v[(d, q)] = scaled
        if not r.synced:
            unsynced.append(i)
    body = {
        "g": target.gateway_id,
        "d": list(devices),
        "q": list(names),
        "u": units,
        "e": [0 if e is None else e for e in exps],
        "s0": s0,
        "t0": t0,
        "tr": tr,
        "di": di,
        "qi": qi_col,
        "ds": ds,
        "dt": dt,
        "v": vs,
    }
    if extra:
        body["x"] = extra
    if unsynced:
        body["ns"] = unsynced
    return zlib.compress(msgpack.packb(body, use_bin_type=True), 9)


def encode_msgpack(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    if not readings:
        return []
    topic = f"{target.topic_prefix}/{target.gateway_id}/mp"
    return [
        Message(topic, payload, tuple(r.seq for r in chunk), readings[0].lane)
        for chunk, payload in _split(
            readings, lambda rs: _encode_msgpack_body(rs, target), max_bytes
        )
    ]


def decode_msgpack(payload: bytes) -> list[dict[str, Any]]:
    """Reverse of the msgpack format: one dict per reading (seq, device, attr, value, unit,
    time in seconds, synced)."""
    body = msgpack.unpackb(zlib.decompress(payload), raw=False, strict_map_key=False)
    out = []
    seq, t = body["s0"], body["t0"]
    last_v: dict[tuple[int, int], int] = {}
    extra = body.get("x", {})
    unsynced = set(body.get("ns", ()))
    for i in range(len(body["di"])):
        seq += body["ds"][i]
        t += body["dt"][i]
        d, q = body["di"][i], body["qi"][i]
        if i in extra:
            value = extra[i]
        else:
            scaled = last_v.get((d, q), 0) + body["v"][i]
            last_v[(d, q)] = scaled
            e = body["e"][q]
            value = scaled / 10**e if e else scaled
        out.append(
            {
                "seq": seq,
                "device": body["d"][d],
                "attr": body["q"][q],
                "value": value,
                "unit": body["u"][q],
                "time": t / body["tr"],
                "synced": i not in unsynced,
            }
        )
    return out


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


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def wire_bytes(message: Message, qos: int = 1) -> int:
    """Bytes an MQTT 3.1.1 PUBLISH of this message and its PUBACK take on the wire (MQTT
    3.1.1 section 3.3: fixed header, topic length + topic, packet id at QoS>0, payload)."""
    remaining = 2 + len(message.topic.encode()) + (2 if qos else 0) + len(message.payload)
    return 1 + _varint_len(remaining) + remaining + (4 if qos else 0)
