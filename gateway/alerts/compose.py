"""Composing alert and digest e-mail: subject and body text, Japanese by default, English per
recipient group, as UTF-8 MIME (the subject RFC 2047-encoded by the email package's SMTP policy).

The subject is short with the essentials first (what, which device and trap, local time) so
it reads on a phone's lock screen; map links stand on their own lines so mail clients make
them clickable: GSI (maps.gsi.go.jp, what Japanese farmers know) and OpenStreetMap.
`Composer` turns a MAIL-lane row (as queued by the engine and the digest) into a `Mail` ready
for SMTP; the mailer sends it, `gateway test-alert` shows it. A digest, and a threshold or
rate alert with its last hour known, also names the charts it would show (specs from
gateway.alerts.chart) and the HTML page around them (gateway.alerts.page); the mailer has
them drawn and `Mail.illustrate` puts them in, beside the text, which is always there. Pure
functions of their inputs: no I/O, no clock, no logging, no idea whether a mail was sent
before (that is the mailer's).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerts.alert import Alert, Summary
from gateway.alerts.chart import Spec, alert_chart, digest_charts
from gateway.alerts.config import AlertsConfig
from gateway.alerts.page import alert_page, attach, digest_page
from gateway.model import Reading

# An alert's snapshot of its quantity by (alert id, status): gateway.alerts.recent.
Snapshots = Callable[[str, str], dict[str, Any] | None]
_SEVERITY = {
    "ja": {
        "critical": "緊急",
        "high": "警報",
        "medium": "注意",
        "low": "情報",
        "informational": "情報",
    },
    "en": {
        "critical": "CRITICAL",
        "high": "ALERT",
        "medium": "WARNING",
        "low": "NOTICE",
        "informational": "INFO",
    },
}
# What happened, by subCategory (rule kinds fall back to the rule name).
_WHAT = {
    "ja": {
        "animalTrapped": "わな作動",
        "animalDetected": "動物検知",
        "stale": "通信途絶",
        "battery": "電池残量低下",
        "waterLevelLow": "水位低下",
        "waterLevelHigh": "水位上昇",
        "waterLevelFalling": "水位急低下",
    },
    "en": {
        "animalTrapped": "Trap triggered",
        "animalDetected": "Animal detected",
        "stale": "Device silent",
        "battery": "Battery low",
        "waterLevelLow": "Water level low",
        "waterLevelHigh": "Water level high",
        "waterLevelFalling": "Water level falling fast",
    },
}
_QUANTITY = {
    "ja": {"water_level": "水位", "water_temperature": "水温", "battery": "電池"},
    "en": {"water_level": "Water level", "water_temperature": "Water temp.", "battery": "Battery"},
}
_TEXT = {
    "ja": {
        "cleared": "解除",
        "trap": "わな",
        "device": "機器",
        "time": "日時",
        "value": "値",
        "map": "地図",
        "more": "{n}件の検知({since}以降)",
        "test": "【テスト】",
        "digest": "日報",
        "latest": "最新",
        "min": "最小",
        "max": "最大",
        "alerts": "本日の警報",
        "none": "なし",
        "nodata": "データなし",
        "footer": "このメールはゲートウェイ {site} から自動送信されています。",
    },
    "en": {
        "cleared": "cleared",
        "trap": "trap",
        "device": "Device",
        "time": "Time",
        "value": "Value",
        "map": "Map",
        "more": "{n} more detections since {since}",
        "test": "[TEST] ",
        "digest": "Daily report",
        "latest": "latest",
        "min": "min",
        "max": "max",
        "alerts": "Alerts today",
        "none": "none",
        "nodata": "no data",
        "footer": "Sent automatically by gateway {site}.",
    },
}


def gsi_url(lat: float, lon: float, zoom: int) -> str:
    return f"https://maps.gsi.go.jp/#{zoom}/{lat:.6f}/{lon:.6f}/"


def osm_url(lat: float, lon: float, zoom: int) -> str:
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}"
        f"#map={zoom}/{lat:.6f}/{lon:.6f}"
    )


def _local(ts: float, tz: ZoneInfo, fmt: str) -> str:
    return datetime.fromtimestamp(ts, tz).strftime(fmt)


def what(alert: Alert, lang: str) -> str:
    return _WHAT[lang].get(alert.subcategory, alert.subcategory or alert.rule)


def alert_text(alert: Alert, lang: str, tz: ZoneInfo, site: str, zoom: int) -> tuple[str, str]:
    """(subject, body) of an alert e-mail."""
    t = _TEXT[lang]
    sev = _SEVERITY[lang].get(alert.severity, alert.severity)
    trap = ""
    if alert.trap is not None:
        trap = f" {t['trap']}{alert.trap}" if lang == "ja" else f" {t['trap']} {alert.trap}"
    cleared = f" {t['cleared']}" if alert.status == "clear" else ""
    head = f"[{sev}] " if lang == "en" else f"【{sev}】"
    test = t["test"] if alert.test else ""
    when = _local(alert.ts, tz, "%m/%d %H:%M")
    subject = f"{test}{head}{what(alert, lang)}{cleared} {alert.device_name}{trap} {when}"
    lines = [
        f"{what(alert, lang)}{cleared}: {alert.device_name}{trap}",
        "",
        f"{t['time']}: {_local(alert.ts, tz, '%Y-%m-%d %H:%M:%S %Z')}",
        f"{t['device']}: {alert.device_name} ({alert.device})",
    ]
    if alert.value is not None:
        lines.append(f"{t['value']}: {alert.value}")
    if alert.folded and alert.folded_since is not None:
        since = _local(alert.folded_since, tz, "%H:%M")
        lines.append(t["more"].format(n=alert.folded, since=since))
    if alert.description:
        lines += ["", alert.description]
    if alert.latitude is not None and alert.longitude is not None:
        lines += [
            "",
            f"{t['map']}:",
            gsi_url(alert.latitude, alert.longitude, zoom),
            osm_url(alert.latitude, alert.longitude, zoom),
        ]
    lines += ["", "--", t["footer"].format(site=site)]
    return subject, "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def digest_text(summary: Summary, lang: str, tz: ZoneInfo, site: str) -> tuple[str, str]:
    """(subject, body) of a daily digest; `summary` as built by gateway.alerts.digest."""
    t = _TEXT[lang]
    subject = f"{t['digest']} {summary.get('site_name') or site} {summary['day']}"
    lines = [subject, ""]
    for key, info in summary["devices"].items():
        lines.append(f"■ {info.get('name') or key}")
        stats = info["stats"]
        if not stats:
            lines.append(f"  {t['nodata']}")
        for q, s in stats.items():
            label = _QUANTITY[lang].get(q, q)
            unit = s.get("unit", "")
            lines.append(
                f"  {label}: {t['latest']} {_num(s['latest'])}{unit} "
                f"({t['min']} {_num(s['min'])} / {t['max']} {_num(s['max'])})"
            )
    lines += ["", f"{t['alerts']}:"]
    if not summary["alerts"]:
        lines.append(f"  {t['none']}")
    for a in summary["alerts"]:
        when = _local(float(a["ts"]), tz, "%H:%M")
        trap = f" #{a['trap']}" if a.get("trap") else ""
        text = a["what_ja"] if lang == "ja" else a["what_en"]
        lines.append(f"  {when} {text} {a['device_name']}{trap}")
    lines += ["", "--", t["footer"].format(site=site)]
    return subject, "\n".join(lines) + "\n"


def message(
    subject: str, body: str, sender: str, to: Sequence[str], key: str, ts: float
) -> EmailMessage:
    """A UTF-8 text/plain message; the Message-ID comes from the idempotency key so a
    (rare) second delivery after a crash is recognisable as the same mail."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(ts, localtime=False)
    domain = sender.rpartition("@")[2] or "gateway.invalid"
    msg["Message-ID"] = f"<{_msgid_safe(key)}@{domain}>"
    msg.set_content(body, charset="utf-8")
    return msg


def _msgid_safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "." for c in key)


@dataclass(frozen=True)
class Mail:
    """One message ready for SMTP: its idempotency key, the envelope recipients, the MIME
    (plain text), and the charts it would show (specs for gateway.alerts.renderer) with the
    HTML page around them, given the charts' Content-IDs."""

    key: str
    to: tuple[str, ...]
    message: EmailMessage
    charts: tuple[Spec, ...] = ()
    page: Callable[[Sequence[str]], str] | None = None

    def illustrate(self, pngs: Sequence[bytes]) -> EmailMessage:
        """The message with its HTML part and `pngs` (one per chart) inline; in place."""
        if self.page is None or len(pngs) != len(self.charts) or not pngs:
            return self.message
        cids = [f"chart{n}.{_msgid_safe(self.key)}@gateway" for n in range(1, len(pngs) + 1)]
        attach(self.message, self.page(cids), list(zip(cids, pngs, strict=True)))
        return self.message


class Unsendable(ValueError):
    """A MAIL-lane row that can never become a message (unreadable, unknown group)."""


class Composer:
    """Turns MAIL-lane rows into `Mail` for one site, in each recipient group's language."""

    def __init__(self, cfg: AlertsConfig, *, site: str, timezone: str) -> None:
        if cfg.smtp is None:
            raise ValueError("no [alerts.smtp] configured: there is no sender to compose for")
        self.cfg = cfg
        self.sender = cfg.smtp.sender
        self.site = site
        self.tz = ZoneInfo(timezone)

    @staticmethod
    def key(row: Reading) -> str:
        """The row's idempotency key, without composing; raises Unsendable."""
        return str(_body(row)["key"])

    def compose(self, row: Reading, recent: Snapshots | None = None) -> Mail:
        """The mail for `row`; raises Unsendable for a row no config could send. `recent`
        gives an alert's snapshot of its quantity (gateway.alerts.recent) for its chart."""
        body = _body(row)
        group = self.cfg.groups.get(str(body["group"]))
        if group is None:
            raise Unsendable(f'unknown recipient group "{body["group"]}"')
        lang, key = group.language, str(body["key"])
        if body["kind"] == "digest":
            summary: Summary = body["summary"]
            subject, text = digest_text(summary, lang, self.tz, self.site)
            msg = message(subject, text, self.sender, group.to, key, row.ts)
            charts = digest_charts(summary, self.cfg.rules, lang, self.tz)
            footer = _TEXT[lang]["footer"].format(site=self.site)

            def page(cids: Sequence[str]) -> str:
                keys = dict(zip([k for k, _ in charts], cids, strict=True))
                return digest_page(summary, subject, lang, self.tz, footer, keys)

            return Mail(key, group.to, msg, tuple(c for _, c in charts), page)
        alert = Alert.from_dict(body["alert"])
        subject, text = alert_text(alert, lang, self.tz, self.site, self.cfg.map_zoom)
        msg = message(subject, text, self.sender, group.to, key, row.ts)
        rule = self.cfg.rule(alert.rule)
        snap = recent(alert.id, alert.status) if recent is not None else None
        spec = alert_chart(alert, rule, snap, lang, self.tz) if rule and snap else None
        if spec is None:
            return Mail(key, group.to, msg)
        alt = str(spec["title"])
        return Mail(
            key, group.to, msg, (spec,), lambda cids: alert_page(subject, text, lang, cids[0], alt)
        )


def _body(row: Reading) -> dict[str, Any]:
    """The row's JSON envelope (untyped JSON), checked for the keys every mail row has."""
    try:
        body = json.loads(str(row.value))
    except json.JSONDecodeError as exc:
        raise Unsendable(f"unreadable mail row: {exc}") from None
    if not isinstance(body, dict) or not {"key", "group", "kind"} <= body.keys():
        raise Unsendable("unreadable mail row: not an object with key, group and kind")
    return body
