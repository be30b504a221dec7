"""The daily digest: a synthetic day of paddy readings and alerts becomes one mail per group
with latest/min/max and the day's series per paddy and the day's alerts; due at the
configured local time. Its figures live in the outbox file (the daybook): a restart mid-day
keeps them, a power cut loses at most what came since the last flush, a digest missed while
stopped is queued at the next start, and a queued day leaves the file."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from gateway.alerts.alert import Alert
from gateway.alerts.compose import digest_text
from gateway.alerts.config import DigestConfig
from gateway.alerts.digest import Digest, last_due, next_due
from gateway.clock import FixedClock
from gateway.model import Lane, Observation, Reading
from gateway.outbox.daybook import Daybook
from gateway.outbox.store import Outbox
from tests.alert_setup import config_text, parse, stack
from tests.smtp_peer import MailSink

JST = ZoneInfo("Asia/Tokyo")
DAY = datetime(2026, 6, 1, 0, 0, tzinfo=JST).timestamp()
DUE = DAY + 18 * 3600


def _alert(ts: float) -> Alert:
    return Alert(
        "trap:traps-3:1", "trap", "alert", "traps-3", "East receiver", "3", "triggered", ts,
        "high", "agriculture", "animalTrapped", "", 36.1, 137.9,
    )  # fmt: skip


def _digest(box: Outbox, staged: list, now: float = DUE, **kwargs) -> Digest:  # type: ignore[no-untyped-def]
    return Digest(
        DigestConfig(at=(18, 0), groups=("farmers", "hunters")),
        Daybook(box),
        name=lambda key: ({"paddy-01": "North paddy"}.get(key, key), None),
        stage=lambda dev, obs, ts, lane: staged.append((dev, obs, ts, lane)),
        clock=FixedClock(now),
        timezone="Asia/Tokyo",
        site_name="Test field",
        log=structlog.get_logger(),
        **kwargs,
    )


def _hours(d: Digest, hours: range) -> None:
    """One reading of each paddy quantity per hour (and one that is not digest material)."""
    for hour in hours:
        level = 5.0 - abs(hour - 9) * 0.25  # 2.75 .. 5.0 .. 2.75 cm
        temp = 18.0 + hour * 0.5  # 18.0 .. 26.5 degC
        ts = DAY + hour * 3600
        d.observe(
            [
                Reading(2 * hour + 1, "paddy-01", "water_level", level, "cm", ts),
                Reading(2 * hour + 2, "paddy-01", "water_temperature", temp, "degC", ts),
                Reading(2 * hour + 2, "buoy-01", "wind_speed", 3.0, "m/s", ts),
            ]
        )


def _rows(staged: list) -> list[dict]:
    assert [(dev, lane) for dev, _o, _t, lane in staged] == [("digest", Lane.MAIL)]
    return [json.loads(o.value) for o in staged[0][1]]


async def test_a_synthetic_day_in_the_digest(tmp_path: Path) -> None:
    staged: list = []
    async with Outbox.open(tmp_path / "o.sqlite", sync="normal") as box:
        d = _digest(box, staged)
        _hours(d, range(18))
        d.on_alert(_alert(DAY + 5 * 3600 + 12 * 60))
        summary = await d.send(DUE)
        rows = _rows(staged)
        assert [r["group"] for r in rows] == ["farmers", "hunters"]
        assert rows[0]["key"] == "digest:farmers:2026-06-01"
        stats = summary["devices"]["paddy-01"]["stats"]
        assert stats["water_level"] == {"latest": 3.0, "min": 2.75, "max": 5.0, "unit": "cm"}
        assert stats["water_temperature"]["min"] == 18.0
        assert stats["water_temperature"]["max"] == 26.5
        assert "buoy-01" not in summary["devices"]
        # The chart's series: one 10-minute bucket per hour here, [start, mean, min, max].
        series = summary["devices"]["paddy-01"]["series"]["water_level"]
        assert len(series) == 18 and series[9] == [DAY + 9 * 3600, 5.0, 5.0, 5.0]

        subject, body = digest_text(rows[0]["summary"], "ja", JST, "Test field")
        assert subject == "日報 Test field 2026-06-01"
        assert "■ North paddy" in body
        assert "  水位: 最新 3cm (最小 2.75 / 最大 5)" in body
        assert "  水温: 最新 26.5degC (最小 18 / 最大 26.5)" in body
        assert "  05:12 わな作動 East receiver #3" in body
        subject, body = digest_text(rows[1]["summary"], "en", JST, "Test field")
        assert "  05:12 Trap triggered East receiver #3" in body
        # The next day starts empty, and the queued day has left the file.
        nxt = await d.summary(DUE + 86400)
        assert nxt["devices"] == {} and nxt["alerts"] == []
        assert nxt.get("start") == DUE
        for table in ("daybook", "daybook_alerts"):
            async with box.db.execute(f"SELECT count(*) FROM {table}") as cur:
                assert (await cur.fetchone()) == (0,)


async def test_a_restart_mid_day_keeps_the_figures_of_before(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox.open(path, sync="normal") as box:
        d = _digest(box, [], now=DAY + 9 * 3600)
        task = asyncio.create_task(d.run())
        await asyncio.sleep(0)
        _hours(d, range(9))  # 00:00 .. 08:00: the low of 2.75 and the first readings
        d.on_alert(_alert(DAY + 5 * 3600))
        task.cancel()  # the daemon stops: the digest writes what it holds
        await asyncio.gather(task, return_exceptions=True)
    staged: list = []
    async with Outbox.open(path, sync="normal") as box:
        d = _digest(box, staged)
        _hours(d, range(9, 18))
        summary = await d.send(DUE)
    stats = summary["devices"]["paddy-01"]["stats"]
    assert stats["water_level"] == {"latest": 3.0, "min": 2.75, "max": 5.0, "unit": "cm"}
    assert stats["water_temperature"]["min"] == 18.0  # 00:00, before the restart
    assert len(summary["devices"]["paddy-01"]["series"]["water_level"]) == 18
    assert [a["device"] for a in summary["alerts"]] == ["traps-3"]
    assert len(_rows(staged)) == 2


async def test_a_power_cut_loses_at_most_what_came_since_the_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox.open(path, sync="normal") as box:
        d = _digest(box, [], now=DAY + 9 * 3600)
        _hours(d, range(6))
        await d.flush()  # the periodic flush (every FLUSH_EVERY s in the daemon)
        _hours(d, range(6, 9))
        assert d.book.pending == 3 * 2  # one bucket per hour and quantity, in memory only
        # Power cut: no stop, no flush; the outbox closes as the file would be found.
    async with Outbox.open(path, sync="normal") as box:
        summary = await _digest(box, []).summary(DUE)
    points = summary["devices"]["paddy-01"]["series"]["water_level"]
    assert [p[0] for p in points] == [DAY + h * 3600 for h in range(6)]


async def test_a_digest_missed_while_stopped_is_queued_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox.open(path, sync="normal") as box:
        d = _digest(box, [], now=DAY + 17 * 3600)
        _hours(d, range(17))
        await d.flush()
    # Stopped at 17:00; started again the next morning: yesterday's digest is due.
    staged: list = []
    async with Outbox.open(path, sync="normal") as box:
        d = _digest(box, staged, now=DAY + 86400 + 9 * 3600)
        await d.catch_up()
        rows = _rows(staged)
        assert rows[0]["key"] == "digest:farmers:2026-06-01"
        assert rows[0]["summary"]["devices"]["paddy-01"]["stats"]["water_level"]["max"] == 5.0
        staged.clear()
        await d.catch_up()  # done once
        assert staged == []


def test_due_at_the_local_time_next_after_now() -> None:
    at = (18, 0)
    assert next_due(DAY, at, JST) == DAY + 18 * 3600
    assert next_due(DAY + 18 * 3600, at, JST) == DAY + 42 * 3600  # exactly at: the next day
    assert next_due(DAY + 20 * 3600, at, JST) == DAY + 42 * 3600
    assert last_due(DAY + 20 * 3600, at, JST) == DAY + 18 * 3600
    assert last_due(DAY + 18 * 3600, at, JST) == DAY + 18 * 3600
    assert last_due(DAY + 17 * 3600, at, JST) == DAY - 6 * 3600


async def test_the_daybook_is_bounded_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.sqlite", sync="normal") as box:
        book = Daybook(box, max_series=2, max_alerts=1)
        await book.open()
        for n in range(5):
            book.add(f"paddy-{n}", "water_level", 3.0, "cm", DAY)
        book.note("a", DAY, "{}")
        book.note("b", DAY, "{}")
        book.note("a", DAY + 1, "{}")  # the same alert again replaces it
        assert book.ignored == 3 + 1
        await book.flush()
        day = await book.day(DUE)
        assert sorted(day.series) == [("paddy-0", "water_level"), ("paddy-1", "water_level")]
        assert len(day.alerts) == 1


async def test_digest_mail_reaches_the_farmers(tmp_path: Path) -> None:
    sink = await MailSink().start()
    extra = '[alerts.digest]\nat = "18:00"\ngroups = ["farmers"]\n'
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite"), extra=extra))
        clock = FixedClock(DAY + 8 * 3600)
        async with stack(cfg, tmp_path / "o.sqlite", {}, clock=clock) as (_b, pipe, alerting):
            pipe.stage("paddy-01", [Observation("water_level", 4.5, "cm")])
            pipe.stage("paddy-01", [Observation("water_level", 3.5, "cm")])
            assert alerting.digest is not None
            await alerting.digest.send(DUE)
            (got,) = await sink.wait_for(1)
        assert sorted(got.recipients) == ["sato@example.jp", "tanaka@example.jp"]
        assert got.message["Subject"] == "日報 Test field 2026-06-01"
        text = got.message.get_body(("plain",))
        assert text is not None
        assert "水位: 最新 3.5cm (最小 3.5 / 最大 4.5)" in text.get_content()
    finally:
        await sink.stop()
