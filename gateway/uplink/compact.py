"""The compact payload format for metered links: a whole batch across devices as
zlib-deflated columnar MessagePack on `<prefix>/<gateway>/mp`.

`encode_msgpack` follows the shape of every encoder in gateway.uplink.payload; `decode_msgpack`
reverses it for consumers and tests. Pure functions, no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gateway.model import Reading, Value
from gateway.uplink.wire import Message, Target, split


def _exponent(values: Sequence[float]) -> int | None:
    """Smallest decimal exponent (0..6) that makes every value an integer, else None."""
    for e in range(7):
        scale = 10**e
        if any(abs(v) * scale >= 2**53 for v in values):
            return None  # beyond exact float integers: sent as plain floats instead
        if all(abs(v * scale - round(v * scale)) < 1e-6 * max(1.0, abs(v * scale)) for v in values):
            return e
    return None


@dataclass
class _Tables:
    """Name tables of one batch: device and attribute indices, units, decimal exponents."""

    devices: dict[str, int] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)
    exps: list[int | None] = field(default_factory=list)


def _tables(readings: Sequence[Reading], target: Target) -> _Tables:
    tables = _Tables()
    numeric: dict[int, list[float]] = {}
    for r in readings:
        tables.devices.setdefault(r.device, len(tables.devices))
        qi = tables.names.setdefault(target.attr(r.device, r.quantity, r.parent), len(tables.names))
        if qi == len(tables.units):
            tables.units.append(r.unit)
        if isinstance(r.value, int | float) and not isinstance(r.value, bool):
            numeric.setdefault(qi, []).append(float(r.value))
    tables.exps = [(_exponent(numeric[q]) if q in numeric else 0) for q in range(len(tables.names))]
    return tables


def _encode_msgpack_body(readings: Sequence[Reading], target: Target) -> bytes:
    """Columnar layout (all integers small after deltas, so deflate shrinks it further):

    g: gateway id; d/q/u: tables of device, quantity (attribute) and unit names;
    s0, t0: first seq and first time (s); ds, dt: per-row deltas of seq and time (time in
    units of 1/tr s); di, qi: per-row indices into d and q; e: per-quantity decimal exponent;
    v: per-row value as the delta from the previous value of the same (device, quantity),
    scaled by 10**e; x: {row: value} for values that are not numbers; ns: rows not synced;
    ip: rows flagged implausible (outside their plausibility range); o: {row: [gateway, seq]}
    for rows another box stamped (`gateway outbox import`).
    """
    tables = _tables(readings, target)
    tr = 1 if all(float(r.ts).is_integer() for r in readings) else 1000
    s0, t0 = readings[0].seq, round(readings[0].ts * tr)
    body: dict[str, Any] = {
        "g": target.gateway_id,
        "d": list(tables.devices),
        "q": list(tables.names),
        "u": tables.units,
        "e": [0 if e is None else e for e in tables.exps],
        "s0": s0,
        "t0": t0,
        "tr": tr,
    }
    body.update(_columns(readings, target, tables, s0, t0, tr))
    return zlib.compress(msgpack.packb(body, use_bin_type=True), 9)


def _columns(
    readings: Sequence[Reading], target: Target, tables: _Tables, s0: int, t0: int, tr: int
) -> dict[str, Any]:
    """The per-row columns di, qi, ds, dt, v, and x / ns / ip when any row needs them."""
    di, qi_col, ds, dt, vs = [], [], [], [], []
    extra: dict[int, Value] = {}
    unsynced, implausible = [], []
    origins: dict[int, list[str | int]] = {}
    last_seq, last_t = s0, t0
    last_v: dict[tuple[int, int], int] = {}
    for i, r in enumerate(readings):
        d = tables.devices[r.device]
        q = tables.names[target.attr(r.device, r.quantity, r.parent)]
        di.append(d)
        qi_col.append(q)
        ds.append(r.seq - last_seq)
        t = round(r.ts * tr)
        dt.append(t - last_t)
        last_seq, last_t = r.seq, t
        e = tables.exps[q]
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
        if not r.plausible:
            implausible.append(i)
        if r.origin is not None:
            origins[i] = [r.origin[0], r.origin[1]]
    columns: dict[str, Any] = {"di": di, "qi": qi_col, "ds": ds, "dt": dt, "v": vs}
    if extra:
        columns["x"] = extra
    if unsynced:
        columns["ns"] = unsynced
    if implausible:
        columns["ip"] = implausible
    if origins:
        columns["o"] = origins
    return columns


def encode_msgpack(readings: Sequence[Reading], target: Target, max_bytes: int) -> list[Message]:
    if not readings:
        return []
    topic = f"{target.topic_prefix}/{target.gateway_id}/mp"
    return [
        Message(topic, payload, tuple(r.seq for r in chunk), readings[0].lane)
        for chunk, payload in split(
            readings, lambda rs: _encode_msgpack_body(rs, target), max_bytes
        )
    ]


def decode_msgpack(payload: bytes) -> list[dict[str, Any]]:
    """Reverse of the msgpack format: one dict per reading (seq, device, attr, value, unit,
    time in seconds, synced, plausible, and `origin` {gateway, seq} for an imported row)."""
    body = msgpack.unpackb(zlib.decompress(payload), raw=False, strict_map_key=False)
    out = []
    seq, t = body["s0"], body["t0"]
    last_v: dict[tuple[int, int], int] = {}
    extra = body.get("x", {})
    unsynced = set(body.get("ns", ()))
    implausible = set(body.get("ip", ()))
    origins = body.get("o", {})
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
                "plausible": i not in implausible,
            }
        )
        if i in origins:
            gw, first_seq = origins[i]
            out[-1]["origin"] = {"gateway": gw, "seq": first_seq}
    return out
