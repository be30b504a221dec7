"""The alert side's platform commands as the plain name -> handler mapping the daemon registers
(`siren`, `alert-test`), the technician's test alert (`gateway.alerts.trial`) in process, and
the rule that the alert side never imports the uplink (its commands go out as handlers)."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import re
from pathlib import Path

import pytest

from gateway.alerts.trial import technician_test
from gateway.model import Lane
from tests.alert_setup import FakeRelay, config_text, parse, stack
from tests.smtp_peer import MailSink

ALERTS = Path(__file__).resolve().parent.parent / "gateway" / "alerts"


async def _dead_port() -> int:
    """A loopback port where no mail server listens (one just stopped)."""
    sink = await MailSink().start()
    await sink.stop()
    return sink.port


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(_poll(), timeout)


async def test_commands_are_a_plain_mapping_of_async_handlers(tmp_path):
    relay = FakeRelay()
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    async with stack(cfg, tmp_path / "o.sqlite", {"relay-1": relay}) as (box, pipe, alerting):
        commands = alerting.commands
        assert set(commands) == {"siren", "alert-test"}
        await _until(lambda: relay.state(1) is False)  # the rest state first

        assert await commands["siren"]({"seconds": 0.2, "flash": True}) == "OK"
        await _until(lambda: relay.state(1) is True and (2, True) in relay.writes)
        await _until(lambda: relay.state(1) is False)  # off after its 0.2 s
        assert await commands["siren"]("5") == "OK"  # seconds as text, as a CLI sends it
        await _until(lambda: relay.state(1) is True)
        assert await commands["siren"]('{"seconds": 0}') == "OK"  # 0 = off now
        await _until(lambda: relay.state(1) is False)

        reply = await commands["alert-test"]({"rule": "trap", "device": "traps-7"})
        assert reply.startswith("OK trap:traps-7:")
        await pipe.flush()
        (row,) = await box.peek(Lane.ALERT)
        sdm = json.loads(str(row.value))
        assert sdm["test"] is True and sdm["alertSource"] == "traps-7"
        assert sdm["id"] == reply.removeprefix("OK ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"seconds": 3, "loud": True}, "unknown key(s) loud"),
        ({"seconds": -1}, '"seconds" must be in [0, 600]'),
        ({"seconds": True}, '"seconds" must be a number'),
        ({"flash": "yes"}, '"flash" must be true or false'),
        # issue 10: these answered OK and left the coil on until someone switched it off
        ({"seconds": "inf"}, '"seconds" must be a finite number'),
        ({"seconds": 1e308}, '"seconds" must be in [0, 600]'),
        ("1e999", '"seconds" must be a finite number'),
        ({"seconds": 601}, '"seconds" must be in [0, 600]'),
    ],
)
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_siren_refuses_bad_arguments_before_switching(tmp_path, args, message):
    relay = FakeRelay()
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    async with stack(cfg, tmp_path / "o.sqlite", {"relay-1": relay}) as (_box, _pipe, alerting):
        await _until(lambda: relay.state(1) is False)
        with pytest.raises(ValueError, match=re.escape(message)):
            await alerting.commands["siren"](args)
        await asyncio.sleep(0.05)
        assert (1, True) not in relay.writes and (2, True) not in relay.writes


async def test_alert_test_names_the_known_rules_for_an_unknown_one(tmp_path):
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    async with stack(cfg, tmp_path / "o.sqlite", {}) as (_box, _pipe, alerting):
        with pytest.raises(KeyError, match="unknown rule 'nope'; known: trap, paddy-dry"):
            await alerting.commands["alert-test"]("nope")
        with pytest.raises(ValueError, match=r"\"rule\" is required"):
            await alerting.commands["alert-test"]({"device": "traps-1"})


async def test_trial_shows_rows_actions_and_mail_without_a_daemon(tmp_path):
    store = tmp_path / "o.sqlite"
    cfg = parse(config_text(await _dead_port(), str(store)))  # nothing listens: not sent
    out = io.StringIO()
    assert await technician_test(cfg, "trap", "traps-4", False, out) == 0
    text = out.getvalue()
    assert "--- alert row for traps-4:" in text
    assert "--- mail row for traps-4:" in text
    assert "--- action siren: relay-1 channel 1, 30 s (not switched here" in text
    assert "--- action flash: relay-1 channel 2, 60 s" in text
    assert "--- mail to tanaka@example.jp, sato@example.jp\nSubject: 【テスト】【警報】" in text
    assert "--- mail to hunters@example.org\nSubject: [TEST] [ALERT] Trap triggered" in text
    assert "https://maps.gsi.go.jp/#16/36.115012/137.954321/" in text
    assert not store.exists()  # the daemon's outbox is not touched
    assert not (tmp_path / "mail-sent.log").exists()


async def test_trial_reports_an_unknown_rule_and_a_dead_server(tmp_path):
    port = await _dead_port()
    cfg = parse(config_text(port, str(tmp_path / "o.sqlite")))
    out = io.StringIO()
    assert await technician_test(cfg, "nope", None, True, out) == 1
    assert out.getvalue() == "test-alert: unknown rule 'nope'; known: trap, paddy-dry\n"
    out = io.StringIO()
    assert await technician_test(cfg, "paddy-dry", None, True, out) == 1
    assert f"test-alert: sending failed: SMTP 127.0.0.1:{port}" in out.getvalue()


async def test_trial_send_delivers_each_group_once(tmp_path):
    sink = await MailSink().start()
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite")))
        out = io.StringIO()
        assert await technician_test(cfg, "paddy-dry", "paddy-01", True, out) == 0
        assert "test-alert: 1 mail(s) sent for paddy-dry:paddy-01:" in out.getvalue()
        (got,) = await sink.wait_for(1)
        assert sorted(got.recipients) == ["sato@example.jp", "tanaka@example.jp"]
        assert got.message["Subject"].startswith("【テスト】【注意】")
    finally:
        await sink.stop()


def test_the_alert_side_never_imports_the_uplink():
    offenders = []
    for path in sorted(ALERTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith(("gateway.uplink", "gateway.daemon", "gateway.cli", "drivers"))
            ]
    assert len(list(ALERTS.glob("*.py"))) >= 10  # the scan saw the package
    assert offenders == []
