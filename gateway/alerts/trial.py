"""The technician's test alert (`gateway test-alert RULE [--device D] [--send]`).

It raises RULE's test alert in a throw-away outbox beside the running daemon, prints what the
platform and each recipient group would get, and with `--send` mails it through the real SMTP
server. It never touches the daemon's outbox, its buses or its relays (the relays belong to the
running daemon: the platform's `alert-test` command tests them); it builds the same engine,
composer and mailer the daemon uses, so what it shows is what the daemon would send.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, TextIO

import structlog

from gateway.alerts.alert import Alert
from gateway.alerts.compose import Composer, Unsendable
from gateway.alerts.engine import AlertEngine
from gateway.alerts.mailer import Mailer
from gateway.alerts.wiring import places, site_place, site_title
from gateway.clock import SystemClock
from gateway.config.loader import Config
from gateway.errors import Transient
from gateway.model import Lane
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline


async def technician_test(
    cfg: Config, rule: str, device: str | None, send: bool, out: TextIO
) -> int:
    """Show (and with `send`, mail) RULE's test alert on `out`; the process exit code."""
    log = structlog.get_logger().bind(component="test-alert")
    with tempfile.TemporaryDirectory(prefix="gateway-test-alert-") as tmp:
        async with Outbox.open(Path(tmp) / "outbox.sqlite", sync="normal", log=log) as box:
            try:
                alert = await raise_test_alert(cfg, box, rule, device, log)
            except KeyError as exc:
                print(f"test-alert: {exc.args[0]}", file=out)
                return 1
            await show_rows(box, out)
            show_actions(cfg, rule, out)
            if cfg.alerts.smtp is not None:
                await show_mail(cfg, box, out)
            if send:
                return await send_mail(cfg, box, alert, log, out)
    return 0


async def raise_test_alert(
    cfg: Config, box: Outbox, rule: str, device: str | None, log: Any
) -> Alert:
    """RULE's test alert, its rows written to `box`; KeyError names an unknown rule."""
    clock = SystemClock(trust=True)
    async with Pipeline(box, clock=clock, log=log) as pipe:
        engine = AlertEngine(
            cfg.alerts, places(cfg), stage=pipe.stage, clock=clock, log=log, site=site_place(cfg)
        )
        return engine.test(rule, device)


async def show_rows(box: Outbox, out: TextIO) -> None:
    """Every row the alert queued (platform event and mail rows), as pretty JSON."""
    for r in await box.peek(None, 1000):
        print(f"--- {r.lane.name.lower()} row for {r.device}:", file=out)
        print(json.dumps(json.loads(str(r.value)), ensure_ascii=False, indent=1), file=out)


def show_actions(cfg: Config, rule: str, out: TextIO) -> None:
    """The relay actions the rule would switch (not switched here)."""
    for name in next(r.actions for r in cfg.alerts.rules if r.name == rule):
        a = cfg.alerts.actions[name]
        print(
            f"--- action {name}: {a.device} channel {a.channel}, {a.seconds:g} s "
            "(not switched here; use the alert-test command)",
            file=out,
        )


async def show_mail(cfg: Config, box: Outbox, out: TextIO) -> None:
    """Each mail as the mailer would compose it: recipients, subject and body."""
    composer = Composer(cfg.alerts, site=site_title(cfg), timezone=cfg.site.timezone)
    for r in await box.peek(Lane.MAIL, 1000):
        try:
            mail = composer.compose(r)
        except Unsendable as exc:
            print(f"--- mail row {r.seq} cannot be sent: {exc}", file=out)
            continue
        print(f"--- mail to {', '.join(mail.to)}\nSubject: {mail.message['Subject']}\n", file=out)
        print(mail.message.get_content(), file=out)


async def send_mail(cfg: Config, box: Outbox, alert: Alert, log: Any, out: TextIO) -> int:
    """Mail the alert through the configured server once (no retry); the exit code."""
    if cfg.alerts.smtp is None:
        print("test-alert: no [alerts.smtp] configured", file=out)
        return 1
    mailer = Mailer(cfg.alerts, box, site=site_title(cfg), timezone=cfg.site.timezone, log=log)
    try:
        await mailer.drain()
    except Transient as exc:
        print(f"test-alert: sending failed: {exc}", file=out)
        return 1
    print(f"test-alert: {mailer.delivered} mail(s) sent for {alert.id}", file=out)
    return 0
