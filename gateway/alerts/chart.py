"""Chart specs: what the digest's and an alert mail's charts show, in final words.

A spec is a plain JSON-able dict that gateway.alerts.plot draws without knowing anything of
languages, time zones or rules: the title, the x range (UTC s) and its tick labels
(site-local hours), and one panel per quantity with its points ([t, mean, min, max]), the
alert rules' limits for that device and quantity as labelled lines, and the alert times as
marks. One chart per paddy for the digest (water level above water temperature); one for a
threshold or rate alert (the hour before it). Pure functions: no I/O, no clock, no matplotlib.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerts.alert import Alert, Summary
from gateway.alerts.rules import Rule

Spec = dict[str, Any]
HOUR = 3600.0
# Dark, saturated, told apart by colour-blind eyes too (blue / orange); alerts are red.
COLORS = {"water_level": "#0046ad", "water_temperature": "#c2410c"}
OTHER_COLORS = ("#166534", "#6b21a8", "#000000")
ORDER = ("water_level", "water_temperature")
UNITS = {"degC": "°C", "degF": "°F", "percent": "%"}
_WORDS = {
    "ja": {
        "water_level": "水位",
        "water_temperature": "水温",
        "above": "上限",
        "below": "下限",
        "hour": "直近1時間",
        "clock": "%-H時",
    },
    "en": {
        "water_level": "Water level",
        "water_temperature": "Water temp.",
        "above": "high limit",
        "below": "low limit",
        "hour": "last hour",
        "clock": "%H:%M",
    },
}


def unit_text(unit: str) -> str:
    return UNITS.get(unit, unit)


def quantity_text(quantity: str, lang: str) -> str:
    return _WORDS[lang].get(quantity, quantity)


def _matches(rule: Rule, device: str) -> bool:
    return not rule.devices or any(fnmatch.fnmatchcase(device, p) for p in rule.devices)


def limits(
    rules: Sequence[Rule], device: str, quantity: str, unit: str, lang: str
) -> list[dict[str, Any]]:
    """The limits of the threshold rules watching `quantity` on `device`, as labelled lines."""
    out: list[dict[str, Any]] = []
    for r in rules:
        if r.kind not in ("threshold", "battery") or r.quantity != quantity:
            continue
        if not _matches(r, device):
            continue
        side, value = ("above", r.above) if r.above is not None else ("below", r.below)
        if value is None or any(x["value"] == value for x in out):
            continue
        label = f"{_WORDS[lang][side]} {value:g}{unit_text(unit)}"
        out.append({"value": value, "side": side, "label": label})
    return out


def hour_ticks(start: float, end: float, tz: ZoneInfo, every: int, fmt: str) -> list[list[Any]]:
    """[t, label] at the local whole hours divisible by `every` within [start, end]."""
    t = datetime.fromtimestamp(start, tz).replace(minute=0, second=0, microsecond=0)
    ticks: list[list[Any]] = []
    while t.timestamp() <= end:
        if t.timestamp() >= start and t.hour % every == 0:
            ticks.append([t.timestamp(), t.strftime(fmt)])
        t = datetime.fromtimestamp(t.timestamp() + HOUR, tz)
    return ticks


def minute_ticks(start: float, end: float, tz: ZoneInfo, every: int = 15) -> list[list[Any]]:
    t = datetime.fromtimestamp(start, tz).replace(second=0, microsecond=0)
    t -= timedelta(minutes=t.minute % every)
    ticks: list[list[Any]] = []
    while t.timestamp() <= end:
        if t.timestamp() >= start:
            ticks.append([t.timestamp(), t.strftime("%H:%M")])
        t += timedelta(minutes=every)
    return ticks


def _ticks(start: float, end: float, tz: ZoneInfo, clock: str) -> list[list[Any]]:
    """Five or so ticks: every 6 hours over a day, every 2 or 1 over less, else minutes."""
    span = end - start
    if span > 12 * HOUR:
        return hour_ticks(start, end, tz, 6, clock)
    if span > 3 * HOUR:
        return hour_ticks(start, end, tz, 2 if span > 6 * HOUR else 1, clock)
    minutes = next((m for m in (1, 2, 5, 10, 15, 30) if span / (m * 60) <= 5), 60)
    return minute_ticks(start, end, tz, minutes)


def _step(points: Sequence[Sequence[float]], default: float) -> float:
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(points) if b[0] > a[0]]
    return min(gaps) if gaps else default


def _latest(v: float, unit: str) -> str:
    return f"{v:.1f} {unit_text(unit)}"


def digest_charts(
    summary: Summary, rules: Sequence[Rule], lang: str, tz: ZoneInfo
) -> list[tuple[str, Spec]]:
    """(device key, spec) per device with a day's series in `summary`, in its order."""
    end = float(summary.get("end", 0.0))
    start = float(summary.get("start", end - 24 * HOUR))
    if end <= start:
        return []
    clock = _WORDS[lang]["clock"]
    ticks = _ticks(start, end, tz, clock)
    out: list[tuple[str, Spec]] = []
    for key, info in summary["devices"].items():
        series = info.get("series") or {}
        names = sorted(series, key=lambda q: (ORDER.index(q) if q in ORDER else 9, q))
        marks = [
            float(a["ts"]) for a in summary["alerts"]
            if a["device"] == key and start <= float(a["ts"]) <= end
        ]  # fmt: skip
        # A day that began late (a new gateway, the demo): the chart spans what there is.
        first = min((p[0] for q in names for p in series[q]), default=start)
        begin = max(start, first - 600.0 if end - first > 2 * HOUR else first)
        panels: list[Spec] = []
        for i, q in enumerate(names):
            points = [p for p in series[q] if begin - 600 <= p[0] <= end]
            if not points:
                continue
            unit = info["stats"][q]["unit"]
            panels.append(
                {
                    "label": f"{quantity_text(q, lang)} ({unit_text(unit)})",
                    "color": COLORS.get(q, OTHER_COLORS[i % len(OTHER_COLORS)]),
                    "points": points,
                    "limits": limits(rules, key, q, unit, lang),
                    "marks": marks,
                    "latest": _latest(info["stats"][q]["latest"], unit),
                }
            )
        if panels:
            # No title: the page names the paddy right above its chart.
            spec: Spec = {
                "start": begin,
                "end": end,
                "step": _step(panels[0]["points"], 600.0),
                "ticks": ticks if begin == start else _ticks(begin, end, tz, clock),
                "panels": panels,
            }
            out.append((key, spec))
    return out


def alert_chart(
    alert: Alert, rule: Rule, recent: dict[str, Any], lang: str, tz: ZoneInfo
) -> Spec | None:
    """The hour before a threshold or rate alert (`recent`: gateway.alerts.recent's snapshot),
    with the rule's limit and the alert's time; None for other kinds or too few points."""
    if rule.kind not in ("threshold", "rate"):
        return None
    start, end = alert.ts - HOUR, alert.ts + 300.0
    points = [p for p in recent.get("points", []) if start <= p[0] <= end]
    if len(points) < 2:
        return None
    # Less than an hour known (just started): the chart spans what there is, not a sliver.
    start = max(start, points[0][0] - 60.0)
    q, unit = rule.quantity, str(recent.get("unit", ""))
    v = alert.value
    value = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else points[-1][1]
    rules = [rule] if rule.kind == "threshold" else []
    panel = {
        "label": f"{quantity_text(q, lang)} ({unit_text(unit)})",
        "color": COLORS.get(q, OTHER_COLORS[0]),
        "points": points,
        "limits": limits(rules, alert.device, q, unit, lang),
        "marks": [alert.ts],
        "latest": _latest(value, unit),
    }
    return {
        "title": f"{alert.device_name} {_WORDS[lang]['hour']}",
        "start": start,
        "end": end,
        "step": _step(points, 60.0),
        "ticks": _ticks(start, end, tz, _WORDS[lang]["clock"]),
        "panels": [panel],
        "size": [6.4, 3.6],
    }
