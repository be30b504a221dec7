"""The daily digest: a synthetic day of paddy readings and alerts becomes one mail per group
with latest/min/max per paddy and the day's alerts; due at the configured local time."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from gateway.alerts.alert import Alert
from gateway.alerts.compose import digest_text
from gateway.alerts.config import DigestConfig
from gateway.alerts.digest import Digest, next_due
from gateway.clock import FixedClock
from gateway.model import Lane, Observation, Reading
from tests.alert_setup import config_text, parse, stack
from tests.smtp_peer import MailSink

JST = ZoneInfo("Asia/Tokyo")
DAY = datetime(2026, 6, 1, 0, 0, tzinfo=JST).timestamp()


def _alert(ts: float) -> Alert:
    return Alert(
        "trap:traps-3:1", "trap", "alert", "traps-3", "East receiver", "3", "triggered", ts,
        "high", "agriculture", "animalTrapped", "", 36.1, 137.9,
    )  # fmt: skip


def _digest(staged: list) -> Digest:
    return Digest(
        DigestConfig(at=(18, 0), groups=("farmers", "hunters")),
        name=lambda key: ({"paddy-01": "North paddy"}.get(key, key), None),
        stage=lambda dev, obs, ts, lane: staged.append((dev, obs, ts, lane)),
        clock=FixedClock(DAY + 18 * 3600),
        timezone="Asia/Tokyo",
        site_name="Test field",
        log=structlog.get_logger(),
    )


def test_a_synthetic_day_in_the_digest():
    staged: list = []
    d = _digest(staged)
    seq = 0
    for hour in range(18):
        level = 5.0 - abs(hour - 9) * 0.25  # 2.75 .. 5.0 .. 2.75 cm
        temp = 18.0 + hour * 0.5  # 18.0 .. 26.5 degC
        ts = DAY + hour * 3600
        seq += 2
        d.observe(
            [
                Reading(seq - 1, "paddy-01", "water_level", level, "cm", ts),
                Reading(seq, "paddy-01", "water_temperature", temp, "degC", ts),
                Reading(seq, "buoy-01", "wind_speed", 3.0, "m/s", ts),  # not digest material
            ]
        )
    d.on_alert(_alert(DAY + 5 * 3600 + 12 * 60))
    summary = d.send()
    assert [(dev, lane) for dev, _o, _t, lane in staged] == [("digest", Lane.MAIL)]
    rows = [json.loads(o.value) for o in staged[0][1]]
    assert [r["group"] for r in rows] == ["farmers", "hunters"]
    assert rows[0]["key"] == "digest:farmers:2026-06-01"
    stats = summary["devices"]["paddy-01"]["stats"]  # type: ignore[index]
    assert stats["water_level"] == {"latest": 3.0, "min": 2.75, "max": 5.0, "unit": "cm"}
    assert stats["water_temperature"]["min"] == 18.0 and stats["water_temperature"]["max"] == 26.5
    assert "buoy-01" not in summary["devices"]  # type: ignore[operator]

    subject, body = digest_text(rows[0]["summary"], "ja", JST, "Test field")
    assert subject == "日報 Test field 2026-06-01"
    assert "■ North paddy" in body
    assert "  水位: 最新 3cm (最小 2.75 / 最大 5)" in body
    assert "  水温: 最新 26.5degC (最小 18 / 最大 26.5)" in body
    assert "  05:12 わな作動 East receiver #3" in body
    subject, body = digest_text(rows[1]["summary"], "en", JST, "Test field")
    assert "  05:12 Trap triggered East receiver #3" in body
    # The next period starts empty.
    assert d.summary(DAY + 86400)["devices"] == {} and d.alerts == []


def test_due_at_the_local_time_next_after_now():
    at = (18, 0)
    assert next_due(DAY, at, JST) == DAY + 18 * 3600
    assert next_due(DAY + 18 * 3600, at, JST) == DAY + 42 * 3600  # exactly at: the next day
    assert next_due(DAY + 20 * 3600, at, JST) == DAY + 42 * 3600


async def test_digest_mail_reaches_the_farmers(tmp_path):
    sink = await MailSink().start()
    extra = '[alerts.digest]\nat = "18:00"\ngroups = ["farmers"]\n'
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite"), extra=extra))
        clock = FixedClock(DAY + 8 * 3600)
        async with stack(cfg, tmp_path / "o.sqlite", {}, clock=clock) as (_b, pipe, alerting):
            pipe.stage("paddy-01", [Observation("water_level", 4.5, "cm")])
            pipe.stage("paddy-01", [Observation("water_level", 3.5, "cm")])
            assert alerting.digest is not None
            alerting.digest.send()
            (got,) = await sink.wait_for(1)
        assert sorted(got.recipients) == ["sato@example.jp", "tanaka@example.jp"]
        assert got.message["Subject"] == "日報 Test field 2026-06-01"
        assert "水位: 最新 3.5cm (最小 3.5 / 最大 4.5)" in got.message.get_content()
    finally:
        await sink.stop()
