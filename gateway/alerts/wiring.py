"""Wiring of the alert side for the daemon: engine, local actions, mailer and digest (its
figures in the outbox file's daybook) built from the config, hooked to the pipeline
(observers: the engine, the digest, the last-hour rings of alert charts) and the buses'
actuators, and run as one task in the daemon's TaskGroup. Its platform commands (`siren`,
`alert-test`) are handed out as a plain mapping `commands` (name -> async handler) that the
daemon registers with its command router: the alert side never sees the uplink.

It holds no logic of its own beyond the two commands' declared argument schemas
(gateway.schema: a siren runs at most its action's `max_seconds`; a test alert's device is a
configured device or a sub-device key of one) and the checks that need the running engine.
"""

from __future__ import annotations

import asyncio
from collections import ChainMap
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.alerts.engine import AlertEngine, Place
from gateway.alerts.recent import Recent
from gateway.contract import Actuator, Command, CommandHandler
from gateway.model import typed_sub_device
from gateway.schema import ArgumentError, Field, Schema

if TYPE_CHECKING:
    # The parts a config may leave out are imported where they are built (below): a config
    # without [alerts.smtp] never loads the mailer (nor aiosmtplib and the mail composer),
    # one without [alerts.digest] never the digest, one without actions no relay actions.
    from gateway.alerts.actions import Actions
    from gateway.alerts.config import ActionConfig
    from gateway.alerts.digest import Digest
    from gateway.alerts.mailer import Mailer
    from gateway.alerts.renderer import Renderer
    from gateway.clock import Clock
    from gateway.config.loader import Config
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
    from gateway.alerts.actions import Actions

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
        renderer: Renderer | None = None,
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
        self.digest: Digest | None = None
        if a.digest is not None:
            from gateway.alerts.digest import Digest
            from gateway.outbox.daybook import Daybook

            self.digest = Digest(
                a.digest,
                Daybook(outbox, bucket=a.digest.resolution),
                name=self._name,
                stage=pipe.stage,
                clock=clock,
                timezone=cfg.site.timezone,
                site_name=site_title(cfg),
                log=log.bind(component="digest"),
                settle=pipe.flush,
            )
            self.engine.listeners.append(self.digest.on_alert)
        # The last hour of what threshold and rate rules watch, for their alert mail's chart.
        self.recent = Recent(a.rules)
        self.engine.listeners.append(self.recent.on_alert)
        self.mailer: Mailer | None = None
        if a.smtp is not None:
            from gateway.alerts.mailer import Mailer

            self.mailer = Mailer(
                a,
                outbox,
                site=site_title(cfg),
                timezone=cfg.site.timezone,
                log=log.bind(component="mailer"),
                backoff=mail_backoff,
                renderer=renderer,
                recent=self.recent.snapshot,
            )
        # The rings first: an alert's snapshot then holds the reading that raised it.
        self._observers = [self.recent.observe] if self.recent.quantities else []
        self._observers.append(self.engine.observe)
        if self.digest is not None:
            self._observers.append(self.digest.observe)
        pipe.observers.extend(self._observers)
        # For the daemon's command router; the names must also be allowed in [uplink].commands.
        self.siren_command = Command(self._siren_schema(a.actions), self._siren)
        self.test_command = Command(self._test_schema(), self._test)
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
            for observer in self._observers:
                self.pipe.observers.remove(observer)

    # -- commands ----------------------------------------------------------------------------
    def _siren_schema(self, actions: Mapping[str, ActionConfig]) -> Schema:
        """`{"siren": {"seconds": 30, "flash": true}}` or a bare number of seconds (0 = off);
        seconds finite and at most the siren's `max_seconds`."""
        siren = actions.get("siren")
        return Schema(
            {
                "seconds": Field(
                    "number", lo=0, hi=siren.max_seconds if siren else None, from_text=True
                ),
                "flash": Field("boolean"),
            },
            bare="seconds",
        )

    def _test_schema(self) -> Schema:
        """`{"alert-test": "trap"}` or `{"alert-test": {"rule": "trap", "device": "traps-7"}}`;
        the device a configured one or a sub-device key one of them has (or can have)."""
        return Schema(
            {
                "rule": Field("text", required=True),
                "device": Field(
                    "text",
                    accept=self._known_device,
                    expect="a configured device or a sub-device key of one",
                ),
            },
            bare="rule",
        )

    def _known_device(self, key: str) -> bool:
        """A configured device, a sub-device key seen in readings, or one a configured device
        can build (`typed_sub_device`): never a topic-unsafe text."""
        engine = self.engine
        if key in engine.places or engine.place(key)[1] is not None:
            return True
        return typed_sub_device(key, engine.places) is not None

    async def _siren(self, args: dict[str, object]) -> str:
        seconds, flash = args.get("seconds"), args.get("flash", False)
        assert seconds is None or isinstance(seconds, int | float)  # the schema checked it
        names = ["siren"] + (["flash"] if flash else [])
        if self.actions is None or any(n not in self.actions.channels for n in names):
            raise ValueError(f"no [alerts.actions.{'] or ['.join(names)}] configured")
        for name in names:
            longest = self.actions.channels[name].cfg.max_seconds
            if seconds is not None and seconds > longest:
                raise ArgumentError(f'"seconds" must be at most {longest:g} for {name}')
        for name in names:
            if seconds == 0:
                self.actions.stop(name)
            else:
                self.actions.trigger(name, seconds or None, force=True)
        return "OK"

    async def _test(self, args: dict[str, object]) -> str:
        rule, device = args["rule"], args.get("device")
        assert isinstance(rule, str) and (device is None or isinstance(device, str))
        alert = self.engine.test(rule, device)
        return f"OK {alert.id}"
