"""Alert e-mail end to end against a real SMTP server (aiosmtpd on 127.0.0.1): a trap event
becomes one mail per recipient group, in the group's language, with the map links; mail
waits in the outbox while the server is down and is delivered once when it returns."""

from __future__ import annotations

import asyncio
import ssl
import sys

import pytest

from gateway.model import Lane, Observation
from tests import certs
from tests.alert_setup import TRAP_LAT, TRAP_LON, FakeRelay, config_text, parse, stack
from tests.smtp_peer import MailSink


async def _until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(_poll(), timeout)


async def test_trap_event_mails_each_group_once_in_its_language(tmp_path):
    sink = await MailSink().start()
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite")))
        async with stack(cfg, tmp_path / "o.sqlite", {"relay-1": FakeRelay()}) as (box, pipe, _):
            pipe.stage("traps", [Observation("trap_state", "set", "", source="12")])
            pipe.stage("traps", [Observation("trap_state", "triggered", "", source="12")])
            got = await sink.wait_for(2)
            await _until(lambda: box.unleased(Lane.MAIL) == 0 and not box.leased())
            await asyncio.sleep(0.3)  # a second delivery would have arrived by now
            assert len(sink.received) == 2
    finally:
        await sink.stop()

    by_to = {tuple(sorted(r.recipients)): r for r in got}
    ja = by_to[("sato@example.jp", "tanaka@example.jp")]
    en = by_to[("hunters@example.org",)]
    assert ja.sender == "gateway@field.example"

    subject = ja.message["Subject"]
    # Essentials first: severity, what, where (device name and trap number).
    assert subject.startswith("【警報】わな作動 東側わな受信機 わな12 ")
    assert b"=?utf-8?" in ja.raw.split(b"\r\n\r\n")[0].lower()  # RFC 2047 on the wire
    body = ja.message.get_content()
    assert "東側わな受信機 (traps-12)" in body
    gsi = f"https://maps.gsi.go.jp/#16/{TRAP_LAT:.6f}/{TRAP_LON:.6f}/"
    osm = (
        f"https://www.openstreetmap.org/?mlat={TRAP_LAT:.6f}&mlon={TRAP_LON:.6f}"
        f"#map=16/{TRAP_LAT:.6f}/{TRAP_LON:.6f}"
    )
    lines = body.splitlines()
    assert gsi in lines and osm in lines  # each link alone on its line
    assert ja.message.get_content_charset() == "utf-8"

    assert en.message["Subject"].startswith("[ALERT] Trap triggered 東側わな受信機 trap 12 ")
    assert "Map:" in en.message.get_content()
    assert osm in en.message.get_content().splitlines()
    # The same alert has one idempotency key per group, visible as the Message-ID.
    assert ja.message["Message-ID"] != en.message["Message-ID"]
    assert "trap.traps-12." in ja.message["Message-ID"]


async def test_mail_waits_for_a_dead_server_then_arrives_once(tmp_path):
    sink = await MailSink().start()
    port = sink.port
    await sink.stop()  # the mail server is down
    cfg = parse(config_text(port, str(tmp_path / "o.sqlite")))
    relay = FakeRelay()
    async with stack(cfg, tmp_path / "o.sqlite", {"relay-1": relay}) as (box, pipe, alerting):
        pipe.stage("traps", [Observation("trap_state", "triggered", "", source="3")])
        # Telemetry keeps flowing while mail cannot leave.
        pipe.stage("paddy-01", [Observation("water_level", 4.2, "cm")])
        assert alerting.mailer is not None
        await _until(lambda: alerting.mailer.backoff.failures >= 2)
        await pipe.flush()  # telemetry is written while mail cannot leave
        assert [r.quantity for r in await box.peek(Lane.TELEMETRY)] == [
            "trap_state",
            "water_level",
        ]
        assert await box.count(Lane.MAIL) == 2
        assert relay.state(1) is True  # the siren did not wait for anything
        sink = MailSink(port=port)
        await sink.start()
        try:
            await sink.wait_for(2)
            await _until(lambda: box.unleased(Lane.MAIL) == 0 and not box.leased())
            await asyncio.sleep(0.3)
            assert len(sink.received) == 2
            assert await box.count(Lane.MAIL) == 0
        finally:
            await sink.stop()


async def test_mail_sent_just_before_a_crash_is_not_sent_again_after_restart(tmp_path):
    sink = await MailSink().start()
    port = sink.port
    await sink.stop()
    path = tmp_path / "o.sqlite"
    cfg = parse(config_text(port, str(path)))
    async with stack(cfg, path, {}) as (box, pipe, _alerting):
        pipe.stage("traps", [Observation("trap_state", "triggered", "", source="1")])
        pipe.stage("traps", [Observation("trap_state", "set", "", source="1")])
        pipe.stage("traps", [Observation("trap_state", "triggered", "", source="2")])
        await pipe.flush()
        rows = await box.peek(Lane.MAIL)
    assert len(rows) == 4
    # The server took trap 1's mails and the process died before acknowledging the rows:
    # their keys were written, the rows are still in the outbox.
    import json

    keys = [json.loads(str(r.value))["key"] for r in rows]
    (tmp_path / "mail-sent.log").write_text("".join(k + "\n" for k in keys if "traps-1" in k))
    sink = await MailSink(port=port).start()
    try:
        async with stack(cfg, path, {}) as (box, _pipe, _alerting):
            await sink.wait_for(2)
            await _until(lambda: box.unleased(Lane.MAIL) == 0 and not box.leased())
            await asyncio.sleep(0.3)
            assert await box.count(Lane.MAIL) == 0
        assert len(sink.received) == 2
        assert all(
            "わな2" in r.message["Subject"] or "trap 2" in r.message["Subject"]
            for r in sink.received
        )
        assert len((tmp_path / "mail-sent.log").read_text().split()) == 4
    finally:
        await sink.stop()


async def test_starttls_and_login_with_the_password_from_a_file(tmp_path):
    ca, ca_key, ca_path = certs.make_ca(tmp_path, "ca")
    crt, key = certs.issue(tmp_path, "mail", ca, ca_key, server=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    sink = await MailSink(tls=ctx, credentials=("gw", "s3cret-パス")).start()
    secret = tmp_path / "smtp.secret"
    secret.write_text("s3cret-パス\n")
    smtp = (
        f'username = "gw"\npassword_file = "{secret}"\nca_file = "{ca_path}"\n'
        'security = "starttls"\n'
    )
    text = config_text(sink.port, str(tmp_path / "o.sqlite")).replace('security = "none"\n', "")
    text = text.replace('from = "gateway@field.example"', 'from = "gateway@field.example"\n' + smtp)
    try:
        cfg = parse(text)
        async with stack(
            cfg,
            tmp_path / "o.sqlite",
            {},
        ) as (_box, pipe, _a):
            with __import__("structlog").testing.capture_logs() as logs:
                pipe.stage("traps", [Observation("trap_state", "triggered", "", source="1")])
                await sink.wait_for(2)
        assert sink.logins == ["gw", "gw"] or sink.logins == ["gw"]
        assert not any("s3cret" in repr(e) for e in logs)
    finally:
        await sink.stop()


async def test_refused_recipient_is_dropped_without_blocking_the_rest(tmp_path):
    class Picky(MailSink):
        async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
            if address.endswith("example.org"):
                return "550 no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    sink = await Picky().start()
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite")))
        async with stack(cfg, tmp_path / "o.sqlite", {}) as (box, pipe, alerting):
            pipe.stage("traps", [Observation("trap_state", "triggered", "", source="1")])
            await sink.wait_for(1)
            await _until(lambda: box.unleased(Lane.MAIL) == 0 and not box.leased())
            assert alerting.mailer is not None and alerting.mailer.dropped == 1
            assert await box.count(Lane.MAIL) == 0
    finally:
        await sink.stop()


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_technician_test_alert_command_sends_to_the_real_server(tmp_path):
    sink = await MailSink().start()
    try:
        cfg_path = tmp_path / "gateway.toml"
        cfg_path.write_text(config_text(sink.port, str(tmp_path / "o.sqlite")))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "test-alert", "trap", "-c", str(cfg_path),
            "--device", "traps-4", "--send",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode()
        assert proc.returncode == 0, text
        assert "test-alert: 2 mail(s) sent for trap:traps-4:" in text
        assert "https://maps.gsi.go.jp/#16/36.115012/137.954321/" in text
        got = await sink.wait_for(2)
        assert all(r.message["Subject"].startswith(("【テスト】", "[TEST]")) for r in got)
        assert not (tmp_path / "o.sqlite").exists()  # the daemon's outbox is not touched
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "test-alert", "nope", "-c", str(cfg_path),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1
        assert "unknown rule 'nope'; known: trap, paddy-dry" in out.decode()
    finally:
        await sink.stop()


def test_folded_repeats_and_clear_in_the_text():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from gateway.alerts.alert import Alert
    from gateway.alerts.compose import alert_text

    jst = ZoneInfo("Asia/Tokyo")
    at = datetime(2026, 6, 1, 5, 10, tzinfo=jst).timestamp()
    since = datetime(2026, 6, 1, 4, 58, tzinfo=jst).timestamp()
    alert = Alert(
        "trap:traps-12:1", "trap", "alert", "traps-12", "East", "12", "triggered", at, "high",
        "agriculture", "animalTrapped", "", None, None, folded=3, folded_since=since,
    )  # fmt: skip
    subject, body = alert_text(alert, "en", jst, "Field", 16)
    assert subject == "[ALERT] Trap triggered East trap 12 06/01 05:10"
    assert "3 more detections since 04:58" in body.splitlines()
    assert "https://" not in body  # no coordinates, no map links
    subject, body = alert_text(alert, "ja", jst, "Field", 16)
    assert "3件の検知(04:58以降)" in body.splitlines()
    from dataclasses import replace

    subject, _ = alert_text(replace(alert, status="clear", folded=0), "ja", jst, "Field", 16)
    assert subject == "【警報】わな作動 解除 East わな12 06/01 05:10"
