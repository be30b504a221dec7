"""The Alert value and how it travels through the outbox.

An `Alert` is a rule event enriched with where and what: device name, trap number,
coordinates, severity and the Smart Data Models `Alert` category. It rides the outbox as
Readings whose value is a compact JSON object (a string, so the store and every encoder carry
it unchanged):
- ALERT lane: quantity `alert`, the SDM-shaped object (`to_sdm`, stamped by `gateway.clock.iso`);
  the uplink's payload formats embed it as an object in the JSON formats.
- MAIL lane: quantity `mail`, `{"kind": "alert", "group": ..., "key": ..., "alert": {...}}`
  one row per recipient group; `key` makes delivery idempotent. A daily digest row has
  `"kind": "digest"` and a `Summary` instead of the alert.
No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NotRequired, TypedDict

from gateway.model import Value

ALERT_QUANTITY = "alert"
MAIL_QUANTITY = "mail"


@dataclass(frozen=True)
class Alert:
    id: str  # unique per gateway: "<rule>:<device>:<ms timestamp>"
    rule: str
    status: str  # "alert" | "clear"
    device: str  # device key (`traps-12`)
    device_name: str
    trap: str | None  # sub-device id (trap number) when the device key has one
    value: Value | None
    ts: float
    severity: str
    category: str
    subcategory: str
    description: str
    latitude: float | None
    longitude: float | None
    folded: int = 0
    folded_since: float | None = None
    test: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        """From `to_dict`'s output after a JSON round trip (a mail row)."""
        return cls(**d)

    def to_sdm(self, iso: str) -> dict[str, object]:
        """Fields after the Smart Data Models `Alert` (dataModel.Alert): category,
        subCategory, severity, dateIssued, location (GeoJSON Point, lon first), alertSource."""
        out: dict[str, object] = {
            "id": self.id,
            "type": "Alert",
            "category": self.category,
            "subCategory": self.subcategory or self.rule,
            "severity": self.severity,
            "dateIssued": iso,
            "alertSource": self.device,
            "description": self.description,
            "status": "active" if self.status == "alert" else "cleared",
        }
        if self.value is not None:
            out["value"] = self.value
        if self.latitude is not None and self.longitude is not None:
            out["location"] = {"type": "Point", "coordinates": [self.longitude, self.latitude]}
        if self.folded:
            out["repeats"] = self.folded
        if self.test:
            out["test"] = True
        return out


class QuantityDay(TypedDict):
    """A digest's figures for one quantity of one device since the last digest."""

    latest: float
    min: float
    max: float
    unit: str


class DeviceDay(TypedDict):
    name: str
    stats: dict[str, QuantityDay]
    # Per quantity, the day's chart points: [bucket start (UTC s), mean, min, max]. Absent
    # in rows queued before the digest had charts.
    series: NotRequired[dict[str, list[list[float]]]]


class AlertLine(TypedDict):
    """An alert as the digest lists it (its text in both languages: groups differ)."""

    ts: float
    rule: str
    device: str
    device_name: str
    trap: str | None
    what_ja: str
    what_en: str
    severity: str
    test: bool


class Summary(TypedDict):
    """The body of a digest mail row: what gateway.alerts.compose turns into text."""

    day: str  # site-local YYYY-MM-DD the digest is sent on
    site_name: str
    devices: dict[str, DeviceDay]
    alerts: list[AlertLine]
    start: NotRequired[float]  # the period the chart shows (UTC s): the last digest's time
    end: NotRequired[float]  # ... and this one's


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def mail_key(alert: Alert, group: str) -> str:
    return f"{alert.id}:{alert.status}:{group}"
