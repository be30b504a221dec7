"""Bytes per reading of each payload format, computed from the encoders (no socket).

`bytes_per_reading_*`: MQTT 3.1.1 PUBLISH + PUBACK framing (`wire_bytes`) over the messages a
lease of readings becomes under the default 64 KiB payload limit. Two kinds of data:
- `noisy`: a day of 10-minute readings of 6 devices (4 paddy probes: water level 0.1 cm, water
  temperature 0.1 degC, battery 0.01 V; 2 weather stations: air temperature 0.1 degC,
  humidity 1 %, battery 0.01 V), a diurnal course plus sensor noise of one to a few steps of
  each sensor's resolution; sent as a day's backlog (`noisy`: the whole day in one lease, as
  after an outage) and live (`noisy_live`: each 10-minute sample in its own 60 s window, as a
  connected gateway with defaults sends it).
- the regular pattern (the unprefixed names, kept for comparison): one probe whose values
  repeat in a short cycle, a day in one lease. Columnar msgpack compresses such a day to well
  under a byte per reading; real noise does not compress like that.
The bytes a transport really puts on the socket (MQTT, HTTP, TLS): bench/wire.py.
"""

from __future__ import annotations

import math
import random

from bench.figures import Doc, Figure, Mode, collect
from gateway.model import Reading
from gateway.uplink.payload import ENCODERS, Target, wire_bytes

# Encoded byte counts of fixed days: the same every run, whatever the machine.
REPEATS = 1
DOCS: dict[str, Doc] = {}
DAY_T0 = 1748736000.0  # 2025-06-01 00:00 UTC
DAY_STEPS, DAY_STEP_S = 144, 600  # a day of 10-minute readings
PAYLOAD_LIMIT = 65536  # max_payload_bytes' default
# device -> (quantity, unit, resolution) per point; short attribute names as a city maps them
DAY_DEVICES = {
    f"paddy-{i:02d}": (
        ("water_level", "cm", 0.1),
        ("water_temperature", "degC", 0.1),
        ("battery", "V", 0.01),
    )
    for i in range(1, 5)
} | {
    f"weather-{i:02d}": (
        ("air_temperature", "degC", 0.1),
        ("humidity", "%", 1),
        ("battery", "V", 0.01),
    )
    for i in range(1, 3)
}
DAY_NAMES = {
    "water_level": "wl",
    "water_temperature": "wt",
    "air_temperature": "t",
    "humidity": "h",
    "battery": "bat",
}


def _on_resolution(value: float, step: float) -> float | int:
    """`value` as the sensor reports it: a whole number of `step`s (1 % humidity: an int)."""
    if step >= 1:
        return int(round(value / step) * step)
    return round(round(value / step) * step, len(str(step).split(".")[1]))


def noisy_day() -> list[Reading]:
    """A day of 10-minute readings of `DAY_DEVICES`: a diurnal course (water warms in the
    afternoon, the level sinks by evaporation, batteries charge by day) plus Gaussian noise
    of one to a few resolution steps, each value rounded to its sensor's resolution."""
    rng = random.Random(13)
    rs: list[Reading] = []
    seq = 1
    for k in range(DAY_STEPS):
        ts = DAY_T0 + DAY_STEP_S * k
        sun = math.sin(2 * math.pi * (k / DAY_STEPS - 0.3))  # peaks mid-afternoon
        for n, (device, points) in enumerate(DAY_DEVICES.items()):
            course = {
                "water_level": 4.0 + n - 0.004 * k + rng.gauss(0, 0.15),
                "water_temperature": 22.0 + 4.0 * sun + rng.gauss(0, 0.12),
                "air_temperature": 26.0 + 6.0 * sun + rng.gauss(0, 0.25),
                "humidity": 70.0 - 15.0 * sun + rng.gauss(0, 1.5),
                "battery": 3.9 + 0.08 * max(0.0, sun) - 0.0003 * k + rng.gauss(0, 0.008),
            }
            for quantity, unit, step in points:
                value = _on_resolution(course[quantity], step)
                rs.append(Reading(seq, device, quantity, value, unit, ts))
                seq += 1
    return rs


def regular_day() -> list[Reading]:
    """The regular pattern: one paddy probe's day of 10-minute readings (level, temperature,
    battery) whose values repeat in a short cycle and drift smoothly."""
    rs: list[Reading] = []
    seq = 1
    for k in range(DAY_STEPS):
        hour = (k / 6) % 24
        level = round(4.5 - 0.004 * k + 0.1 * ((k * 7919) % 5 - 2) / 2, 1)
        temp = round(19.0 + 6.0 * max(0.0, 1 - abs(hour - 14) / 8) + 0.1 * ((k * 31) % 3), 1)
        bat = round(3.65 - 0.0001 * k, 2)
        for q, v, u in (
            ("water_level", level, "cm"),
            ("water_temperature", temp, "degC"),
            ("battery", bat, "V"),
        ):
            rs.append(Reading(seq, "paddy-01", q, v, u, DAY_T0 + DAY_STEP_S * k))
            seq += 1
    return rs


def _per_reading(leases: list[list[Reading]], label: str) -> dict[str, float]:
    """Bytes per reading of each format: every lease encoded as the uplink does, PUBLISH +
    PUBACK framing counted."""
    names = {(d, q): DAY_NAMES[q] for d, points in DAY_DEVICES.items() for q, _, _ in points}
    target = Target("k3y", "gw1", attributes=names)
    n = sum(len(lease) for lease in leases)
    out = {}
    for fmt, encode in ENCODERS.items():
        total = sum(wire_bytes(m) for lease in leases for m in encode(lease, target, PAYLOAD_LIMIT))
        out[f"bytes_per_reading{label}_{fmt.replace('-', '_')}"] = round(total / n, 2)
    return out


def payload_figures() -> dict[str, dict[str, float]]:
    """{kind: figures}: the regular pattern's day, the noisy day as a backlog and live."""
    day = noisy_day()
    live: dict[float, list[Reading]] = {}
    for r in day:
        live.setdefault(r.ts, []).append(r)
    return {
        "regular": _per_reading([regular_day()], ""),
        "noisy": _per_reading([day], "_noisy"),
        "noisy_live": _per_reading(list(live.values()), "_noisy_live"),
    }


PAYLOAD_SETTINGS = {
    "regular": {"data": "regular pattern, 1 device, a day's backlog", "readings": 432},
    "noisy": {"data": "noisy, 6 devices, a day's backlog", "readings": 2592},
    "noisy_live": {"data": "noisy, 6 devices, each 10-min sample in its window", "readings": 2592},
}
_FRAMING = "MQTT PUBLISH + PUBACK framing incl."
for _kind, _what in (
    ("", "regular pattern: one paddy probe's day (level, temperature, battery every 10 min)"),
    ("_noisy", "noisy: 6 devices' day, sensor noise at each resolution, as one backlog"),
    ("_noisy_live", "noisy: the same day sent live, each 10-minute sample in its own window"),
):
    for _fmt, _target in (
        ("fiware_json", ""),
        ("fiware_ul", "≤ 15"),
        ("json", ""),
        ("msgpack", "≤ 8"),
    ):
        DOCS[f"bytes_per_reading{_kind}_{_fmt}"] = Doc(
            f"{_what}; {_fmt.replace('_', '-')}; {_FRAMING}", _target if not _kind else ""
        )


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    """The figures of every kind of day; `mode` and `repeats` change nothing (fixed data)."""
    base = {"max_payload_bytes": PAYLOAD_LIMIT, "counted": "MQTT PUBLISH + PUBACK, QoS 1"}
    figures: dict[str, Figure] = {}
    for kind, found in payload_figures().items():
        figures |= collect([found], base | PAYLOAD_SETTINGS[kind], DOCS)
    return figures
