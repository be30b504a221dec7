"""The Alert value and how it travels through the outbox.

An `Alert` is a rule event enriched with where and what: device name, trap number,
coordinates, severity and the Smart Data Models `Alert` category. It rides the outbox as
Readings whose value is a compact JSON object (a string, so the store and every encoder carry
it unchanged):
- ALERT lane: quantity `alert`, the SDM-shaped object (`to_sdm`, stamped by `issued`); the
  uplink's payload formats embed it as an object in the JSON formats.
- MAIL lane: quantity `mail`, `{"kind": "alert", "group": ..., "key": ..., "alert": {...}}`
  one row per recipient group; `key` makes delivery idempotent.
No I/O here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

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
    def from_dict(cls, d: dict[str, object]) -> Alert:
        return cls(**d)  # type: ignore[arg-type]

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


def issued(ts: float) -> str:
    """`dateIssued`: ISO 8601 UTC with a `Z`, milliseconds only when the time has a fraction
    (the form of every timestamp the uplink sends; alerts are rare, so no caching here)."""
    secs, ms = divmod(round(ts * 1000), 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{stamp}.{ms:03d}Z" if ms else f"{stamp}Z"


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def mail_key(alert: Alert, group: str) -> str:
    return f"{alert.id}:{alert.status}:{group}"
