"""Wiring of the alert side for the daemon: engine, local actions, mailer and digest built
from the config, hooked to the pipeline (observers), the buses' actuators and the command
router (`siren`, `alert-test`), and run as one task in the daemon's TaskGroup.

It holds no logic of its own beyond argument checking for the two commands.
"""

from __future__ import annotations

import asyncio
import json
from collections import ChainMap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.alerts.actions import Actions
from gateway.alerts.digest import Digest
from gateway.alerts.engine import AlertEngine, Place
from gateway.alerts.mailer import Mailer
from gateway.clock import Clock
from gateway.config.loader import Config
from gateway.contract import Actuator
from gateway.model import Lane
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.supervise import Backoff
from gateway.uplink.commands import CommandRouter

COMMANDS = ("siren", "alert-test")


def places(cfg: Config) -> dict[str, Place]:
    return {d.id: Place(d.name or d.id, d.latitude, d.longitude) for d in cfg.devices()}


class Alerting:
    def __init__(
        self,
        cfg: Config,
        pipe: Pipeline,
        outbox: Outbox,
        actuators: Sequence[Mapping[str, Actuator]] | Mapping[str, Actuator],
        *,
        clock: Clock,
        log: Any,
        mail_backoff: Backoff | None = None,
    ) -> None:
        a = cfg.alerts
        self.pipe = pipe
        live = ChainMap(*actuators) if isinstance(actuators, Sequence) else actuators
        self.actions = (
            Actions(
                a.actions,
                live,
                quiet=a.quiet_hours,
                timezone=cfg.site.timezone,
                wall=clock.now,
                log=log.bind(component="actions"),
            )
            if a.actions
            else None
        )
        site = Place(cfg.site.name or cfg.site.id, cfg.site.latitude, cfg.site.longitude)
        self.engine = AlertEngine(
            a,
            places(cfg),
            stage=pipe.stage,
            clock=clock,
            log=log.bind(component="alerts"),
            actions=self.actions,
            site=site,
            memory=Path(cfg.store.path).with_name("alert-state.json"),
        )
        self.digest = None
        if a.digest is not None:
            self.digest = Digest(
                a.digest,
                name=lambda key: (lambda p, t: (p.name, t))(*self.engine.place(key)),
                stage=pipe.stage,
                clock=clock,
                timezone=cfg.site.timezone,
                site_name=cfg.site.name or cfg.site.id,
                log=log.bind(component="digest"),
            )
            self.engine.listeners.append(self.digest.on_alert)
        self.mailer = None
        if a.smtp is not None:
            self.mailer = Mailer(
                a,
                outbox,
                site=cfg.site.name or cfg.site.id,
                timezone=cfg.site.timezone,
                log=log.bind(component="mailer"),
                backoff=mail_backoff,
            )
        pipe.observers.append(self.engine.observe)
        if self.digest is not None:
            pipe.observers.append(self.digest.observe)

    def register(self, router: CommandRouter) -> None:
        router.register("siren", self.siren_command)
        router.register("alert-test", self.test_command)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.engine.run(), name="alert-ticks")
                if self.actions is not None:
                    tg.create_task(self.actions.run(), name="actions")
                if self.mailer is not None:
                    tg.create_task(self.mailer.run(), name="mailer")
                if self.digest is not None:
                    tg.create_task(self.digest.run(), name="digest")
        finally:
            self.pipe.observers.remove(self.engine.observe)
            if self.digest is not None:
                self.pipe.observers.remove(self.digest.observe)

    # -- commands --------------------------------------------------------------------------
    async def siren_command(self, args: Any) -> str:
        """`{"siren": {"seconds": 30, "flash": true}}` (or a number of seconds, or 0 = off)."""
        if isinstance(args, str) and args.strip().startswith("{"):
            args = json.loads(args)
        if isinstance(args, dict):
            unknown = set(args) - {"seconds", "flash"}
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
            seconds, flash = args.get("seconds"), args.get("flash", False)
        else:
            seconds, flash = (None if args in ("", None) else args), False
        if isinstance(seconds, str):
            seconds = float(seconds)
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
        ):
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        if not isinstance(flash, bool):
            raise ValueError(f"flash must be true or false, got {flash!r}")
        names = ["siren"] + (["flash"] if flash else [])
        if self.actions is None or any(n not in self.actions.channels for n in names):
            raise ValueError(f"no [alerts.actions.{'] or ['.join(names)}] configured")
        for name in names:
            if seconds == 0:
                self.actions.stop(name)
            else:
                self.actions.trigger(name, seconds or None, force=True)
        return "OK"

    async def test_command(self, args: Any) -> str:
        """`{"alert-test": "trap"}` or `{"alert-test": {"rule": "trap", "device": "trap-01"}}`."""
        if isinstance(args, str) and args.strip().startswith("{"):
            args = json.loads(args)
        device = None
        if isinstance(args, dict):
            rule, device = args.get("rule"), args.get("device")
        else:
            rule = args
        if not isinstance(rule, str) or not rule:
            raise ValueError('expected a rule name or {"rule": ..., "device": ...}')
        alert = self.engine.test(rule, device)
        return f"OK {alert.id}"


async def technician_test(cfg: Config, rule: str, device: str | None, send: bool, out: Any) -> int:
    """`gateway test-alert RULE`: show (and with `send`, mail) what RULE's alert would be.

    Runs beside the daemon without touching its outbox or its buses (the relays belong to
    the running daemon: test them with the platform's `alert-test` command)."""
    import tempfile

    import structlog

    from gateway.clock import SystemClock
    from gateway.errors import Transient

    log = structlog.get_logger().bind(component="test-alert")
    clock = SystemClock(trust=True)
    with tempfile.TemporaryDirectory(prefix="gateway-test-alert-") as tmp:
        async with Outbox.open(Path(tmp) / "outbox.sqlite", sync="normal", log=log) as box:
            async with Pipeline(box, clock=clock, log=log) as pipe:
                engine = AlertEngine(
                    cfg.alerts,
                    places(cfg),
                    stage=pipe.stage,
                    clock=clock,
                    log=log,
                    site=Place(cfg.site.name or cfg.site.id, cfg.site.latitude, cfg.site.longitude),
                )
                try:
                    alert = engine.test(rule, device)
                except KeyError as exc:
                    print(f"test-alert: {exc.args[0]}", file=out)
                    return 1
            for r in await box.peek(None, 1000):
                print(f"--- {r.lane.name.lower()} row for {r.device}:", file=out)
                print(json.dumps(json.loads(str(r.value)), ensure_ascii=False, indent=1), file=out)
            actions = engine.rules[rule].actions
            for name in actions:
                a = cfg.alerts.actions[name]
                print(
                    f"--- action {name}: {a.device} channel {a.channel}, {a.seconds:g} s "
                    "(not switched here; use the alert-test command)",
                    file=out,
                )
            mailer = (
                Mailer(
                    cfg.alerts,
                    box,
                    site=cfg.site.name or cfg.site.id,
                    timezone=cfg.site.timezone,
                    log=log,
                )
                if cfg.alerts.smtp
                else None
            )
            if mailer is not None:
                for r in await box.lease(Lane.MAIL, 1000):
                    item = mailer._compose(r)
                    if item is not None:
                        msg, to, _key = item
                        print(f"--- mail to {', '.join(to)}\nSubject: {msg['Subject']}\n", file=out)
                        print(msg.get_content(), file=out)
                box.release_all()
            if send:
                if mailer is None:
                    print("test-alert: no [alerts.smtp] configured", file=out)
                    return 1
                try:
                    await mailer.drain()
                except Transient as exc:
                    print(f"test-alert: sending failed: {exc}", file=out)
                    return 1
                print(f"test-alert: {mailer.delivered} mail(s) sent for {alert.id}", file=out)
    return 0
