"""The bench's realistic day (bench/formats.py): values on each sensor's resolution grid, noisy,
and carried exactly by the compact format, so its bytes-per-reading figure is of real data."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from bench.formats import DAY_DEVICES, DAY_STEPS, noisy_day, regular_day
from gateway.uplink.payload import Target, decode_msgpack, encode_msgpack


def test_the_noisy_day_sits_on_each_sensors_resolution_and_is_noisy() -> None:
    day = noisy_day()
    assert len(day) == DAY_STEPS * sum(len(points) for points in DAY_DEVICES.values())
    step = {(d, q): s for d, points in DAY_DEVICES.items() for q, _, s in points}
    series: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in day:
        s = step[(r.device, r.quantity)]
        assert isinstance(r.value, int | float)
        assert abs(r.value / s - round(r.value / s)) < 1e-6, (r.quantity, r.value)
        series[(r.device, r.quantity)].append(r.value)
    for key, values in series.items():
        moves = sum(1 for a, b in pairwise(values) if a != b)
        assert moves > len(values) // 2, key  # noise: most readings differ from the last


def test_compact_format_carries_both_days_exactly() -> None:
    target = Target("k3y", "gw1")
    for day in (noisy_day(), regular_day()):
        messages = encode_msgpack(day, target, 65536)
        back = [r for m in messages for r in decode_msgpack(m.payload)]
        assert [(r["seq"], r["device"], r["attr"], r["value"], r["time"]) for r in back] == [
            (r.seq, r.device, r.quantity, r.value, r.ts) for r in day
        ]
