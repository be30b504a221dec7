"""Wiring of the alert side for the daemon: engine, local actions, mailer and digest built
from the config, hooked to the pipeline (observers) and the buses' actuators, and run as one
task in the daemon's TaskGroup. Its platform commands (`siren`, `alert-test`) are handed out
as a plain mapping `commands` (name -> async handler) that the daemon registers with its
command router: the alert side never sees the uplink.

It holds no logic of its own beyond argument checking for the two commands.
"""

from __future__ import annotations

import asyncio
import json
from collections import ChainMap
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from gateway.alerts.actions import Actions
from gateway.alerts.digest import Digest
from gateway.alerts.engine import AlertEngine, Place
from gateway.alerts.mailer import Mailer
from gateway.clock import Clock
from gateway.config.loader import Config
from gateway.contract import Actuator, CommandHandler
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.supervise import Backoff


def places(cfg: Config) -> dict[str, Place]:
    """Where each configured device is, by device id."""
    return {d.id: Place(d.name or d.id, d.latitude, d.longitude) for d in cfg.devices()}


def site_place(cfg: Config) -> Place:
    """The site itself: the fallback place of a device without coordinates."""
    return Place(site_title(cfg), cfg.site.latitude, cfg.site.longitude)


def site_title(cfg: Config) -> str:
    """The site's name as mail shows it (its id when it has no name)."""
    return cfg.site.name or cfg.site.id


def _actions(cfg: Config, live: Mapping[str, Actuator], clock: Clock, log: Any) -> Actions:
    a = cfg.alerts
    return Actions(
        a.actions,
        live,
        quiet=a.quiet_hours,
        timezone=cfg.site.timezone,
        wall=clock.now,
        log=log.bind(component="actions"),
    )


class Alerting:
    """The alert side of one daemon: build it, register `commands`, run `run()`."""

    def __init__(
        self,
        cfg: Config,
        pipe: Pipeline,
        outbox: Outbox,
        actuators: Sequence[MutableMapping[str, Actuator]] | Mapping[str, Actuator],
        *,
        clock: Clock,
        log: Any,
        mail_backoff: Backoff | None = None,
    ) -> None:
        """`actuators`: the buses' relay modules by device id, or a sequence of such tables
        (each buses' own), read live: a module registered later is still found."""
        a = cfg.alerts
        self.pipe = pipe
        live = ChainMap(*actuators) if isinstance(actuators, Sequence) else actuators
        self.actions = _actions(cfg, live, clock, log) if a.actions else None
        self.engine = AlertEngine(
            a,
            places(cfg),
            stage=pipe.stage,
            clock=clock,
            log=log.bind(component="alerts"),
            actions=self.actions,
            site=site_place(cfg),
            memory=Path(cfg.store.path).with_name("alert-state.json"),
        )
        self.digest = None
        if a.digest is not None:
            self.digest = Digest(
                a.digest,
                name=self._name,
                stage=pipe.stage,
                clock=clock,
                timezone=cfg.site.timezone,
                site_name=site_title(cfg),
                log=log.bind(component="digest"),
            )
            self.engine.listeners.append(self.digest.on_alert)
        self.mailer = None
        if a.smtp is not None:
            self.mailer = Mailer(
                a,
                outbox,
                site=site_title(cfg),
                timezone=cfg.site.timezone,
                log=log.bind(component="mailer"),
                backoff=mail_backoff,
            )
        pipe.observers.append(self.engine.observe)
        if self.digest is not None:
            pipe.observers.append(self.digest.observe)
        # For the daemon's command router; the names must also be allowed in [uplink].commands.
        self.commands: Mapping[str, CommandHandler] = {
            "siren": self.siren_command,
            "alert-test": self.test_command,
        }

    def _name(self, key: str) -> tuple[str, str | None]:
        """The digest's (device name, sub-device) for a device key."""
        place, sub = self.engine.place(key)
        return place.name, sub

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
