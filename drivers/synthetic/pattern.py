"""Value patterns for synthetic points: pure functions of (point, poll number, time)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gateway.model import Value


@dataclass(frozen=True)
class Point:
    quantity: str
    unit: str
    pattern: str
    low: float = 0.0
    high: float = 1.0
    period: float = 3600.0
    values: tuple[Value, ...] = ()
    every: int = 1
    decimals: int = 2


def _sine(p: Point, n: int, t: float, rng: random.Random) -> Value:
    mid, amp = (p.high + p.low) / 2, (p.high - p.low) / 2
    return round(mid + amp * math.sin(2 * math.pi * t / p.period), p.decimals)


def _ramp(p: Point, n: int, t: float, rng: random.Random) -> Value:
    return round(p.low + (p.high - p.low) * ((t % p.period) / p.period), p.decimals)


def _random(p: Point, n: int, t: float, rng: random.Random) -> Value:
    return round(rng.uniform(p.low, p.high), p.decimals)


def _constant(p: Point, n: int, t: float, rng: random.Random) -> Value:
    return p.low


def _cycle(p: Point, n: int, t: float, rng: random.Random) -> Value:
    return p.values[(n // p.every) % len(p.values)]


def _counter(p: Point, n: int, t: float, rng: random.Random) -> Value:
    return n


PATTERNS = {
    "sine": _sine,
    "ramp": _ramp,
    "random": _random,
    "constant": _constant,
    "cycle": _cycle,
    "counter": _counter,
}
