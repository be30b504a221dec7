"""The alert engine: feeds readings and clock ticks to the rules, turns their events into
Alerts, starts local actions at once, and queues platform events (ALERT lane) and e-mail
(MAIL lane, one row per recipient group) through the pipeline without waiting.

It is a pipeline observer: `observe` runs synchronously inside `Pipeline.stage`, so it must
stay cheap and never await (rules are indexed by quantity; matches are cached per device).
A trap detection switches the siren every time; the cooldown only folds the messages.
Which (rule, device) pairs are raised, and when each last reported, is kept in
`alert-state.json` (gateway.alerts.memory; saved a moment after each alert or clear), so a
restart or a config reload with a trap still triggered neither sounds the siren again nor
mails again. Otherwise it does no I/O: relays are the actions' job, delivery the uplink's and
the mailer's.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.alerts.actions import Actions
from gateway.alerts.alert import ALERT_QUANTITY, MAIL_QUANTITY, Alert, dumps, mail_key
from gateway.alerts.config import AlertsConfig
from gateway.alerts.memory import AlertMemory, Remembered
from gateway.alerts.rules import Cooldown, Event, Rule, RuleState
from gateway.clock import Clock, iso
from gateway.model import Lane, Observation, Reading, sub_device_key, typed_sub_device

_SAVE_DELAY = 0.1  # s; a power cut in this window costs at most one repeated alert
_MAX_SUBS = 10_000  # sub-device keys remembered (trap ids behind receivers)
Stage = Callable[[str, Sequence[Observation], float | None, Lane], Any]


@dataclass(frozen=True)
class Place:
    """What an e-mail says about where a device is."""

    name: str
    latitude: float | None
    longitude: float | None


class AlertEngine:
    def __init__(
        self,
        cfg: AlertsConfig,
        places: Mapping[str, Place],
        *,
        stage: Stage,
        clock: Clock,
        log: Any,
        actions: Actions | None = None,
        site: Place | None = None,
        tick: float = 10.0,
        memory: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.places = dict(places)
        self._subs: dict[str, tuple[str, str]] = {}  # sub-device key -> (parent, sub id)
        self.stage = stage
        self.clock = clock
        self.log = log
        self.actions = actions
        self.site = site or Place("", None, None)
        self.tick_interval = tick
        self.listeners: list[Callable[[Alert], None]] = []
        self.rules = {r.name: r for r in cfg.rules}
        self._by_quantity: dict[str, list[Rule]] = {}
        self._stale = [r for r in cfg.rules if r.kind == "stale"]
        for r in cfg.rules:
            if r.kind != "stale":
                self._by_quantity.setdefault(r.quantity, []).append(r)
        self._match: dict[tuple[str, str], bool] = {}
        self.states: dict[tuple[str, str], RuleState] = {}
        self.cooldowns: dict[tuple[str, str], Cooldown] = {}
        self.raised = 0
        # A stale rule naming devices watches them from the start: one that never speaks
        # (its battery died before we booted) still goes stale.
        now = clock.now()
        for r in self._stale:
            for d in r.devices:
                if not any(c in d for c in "*?["):
                    self._state(r, d).since = now
        self.memory = AlertMemory(memory, log) if memory is not None else None
        self._save_pending = False
        self._load()

    # -- what survives a restart -----------------------------------------------------------
    def _load(self) -> None:
        if self.memory is None:
            return
        for (name, device), saved in self.memory.load().items():
            rule = self.rules.get(name)
            if rule is None:
                continue  # a rule removed from the config
            state = self._state(rule, device)
            state.active = saved.active
            if state.active and rule.kind == "event":
                state.last = rule.equals  # still triggered after the restart is no new edge
            cooldown = self.cooldowns[(name, device)]
            cooldown.reported_at = saved.reported_at
            cooldown.open = saved.open

    def _save(self) -> None:
        if self.memory is None:
            return
        self.memory.save(
            {
                key: Remembered(
                    state.active, self.cooldowns[key].open, self.cooldowns[key].reported_at
                )
                for key, state in self.states.items()
                if state.active or self.cooldowns[key].reported_at is not None
            }
        )

    # -- input -----------------------------------------------------------------------------
    def observe(self, readings: Sequence[Reading]) -> None:
        """Pipeline observer: every staged batch passes here synchronously."""
        for r in readings:
            if r.lane != Lane.TELEMETRY:
                continue  # our own alert and mail rows
            if r.parent is not None and r.device not in self._subs:
                self._learn(r.device, r.parent, r.sub or "")
            for rule in self._by_quantity.get(r.quantity, ()):
                if self._matches(rule, r.device):
                    self._handle(rule, self._state(rule, r.device).feed(r.ts, r.value))
            for rule in self._stale:
                if self._matches(rule, r.device):
                    self._handle(rule, self._state(rule, r.device).feed(r.ts, r.value))

    def tick(self, now: float | None = None) -> None:
        now = self.clock.now() if now is None else now
        for (name, _device), state in list(self.states.items()):
            self._handle(self.rules[name], state.tick(now))

    async def run(self) -> None:
        """Clock ticks for hold times and stale devices."""
        try:
            while True:
                await asyncio.sleep(self.tick_interval)
                self.tick()
        finally:
            if self._save_pending:
                self._save()  # a change still waiting for its delayed save

    # -- rules -> alerts -------------------------------------------------------------------
    def _matches(self, rule: Rule, device: str) -> bool:
        key = (rule.name, device)
        hit = self._match.get(key)
        if hit is None:
            hit = not rule.devices or any(fnmatch.fnmatchcase(device, p) for p in rule.devices)
            self._match[key] = hit
        return hit

    def _state(self, rule: Rule, device: str) -> RuleState:
        key = (rule.name, device)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = RuleState(rule, device)
            self.cooldowns[key] = Cooldown(rule.cooldown)
        return state

    def _handle(self, rule: Rule, events: Iterable[Event]) -> None:
        changed = False
        for event in events:
            changed = True
            if event.kind == "alert":
                self._act(rule)
            admitted = self.cooldowns[(rule.name, event.device)].admit(event)
            if admitted is not None:
                self.publish(rule, self.alert(rule, admitted))
        if changed:
            self._save_soon()

    def _save_soon(self) -> None:
        """Save a moment later, off the path from the trap event to the relay write."""
        if self.memory is None or self._save_pending:
            return
        self._save_pending = True

        def save() -> None:
            self._save_pending = False
            self._save()

        try:
            asyncio.get_running_loop().call_later(_SAVE_DELAY, save)
        except RuntimeError:  # no loop (a replay or a test driving the engine directly)
            save()

    def _act(self, rule: Rule) -> None:
        if self.actions is None:
            return
        for name in rule.actions:
            self.actions.trigger(name)

    def _learn(self, key: str, parent: str, sub: str) -> None:
        """Remember which configured device a sub-device key sits behind (from its readings).
        Sub-device ids come off the radio: the table is bounded, the oldest entry goes."""
        if len(self._subs) >= _MAX_SUBS:
            del self._subs[next(iter(self._subs))]
        self._subs[key] = (parent, sub)

    def place(self, device: str) -> tuple[Place, str | None]:
        """The configured device behind a device key, and the sub-device (trap number): a
        configured device is its own place; a sub-device's parent is known from its readings
        (`Reading.parent`); anything else is placed at the site."""
        if device in self.places:
            return self.places[device], None
        known = self._subs.get(device)
        if known is not None and known[0] in self.places:
            return self.places[known[0]], known[1]
        return Place(device, self.site.latitude, self.site.longitude), None

    def alert(self, rule: Rule, event: Event, *, test: bool = False) -> Alert:
        place, trap = self.place(event.device)
        return Alert(
            id=f"{rule.name}:{event.device}:{round(event.ts * 1000)}",
            rule=rule.name,
            status=event.kind,
            device=event.device,
            device_name=place.name or event.device,
            trap=trap,
            value=event.value,
            ts=event.ts,
            severity=rule.severity,
            category=rule.category,
            subcategory=rule.subcategory or rule.name,
            description=rule.description,
            latitude=place.latitude if place.latitude is not None else self.site.latitude,
            longitude=place.longitude if place.longitude is not None else self.site.longitude,
            folded=event.folded,
            folded_since=event.folded_since,
            test=test,
        )

    def publish(self, rule: Rule, alert: Alert) -> None:
        """Queue the platform event and the e-mail rows; tell listeners (the digest)."""
        self.raised += alert.status == "alert"
        self.log.warning(
            "alert" if alert.status == "alert" else "alert cleared",
            rule=rule.name,
            device=alert.device,
            value=alert.value,
            severity=alert.severity,
            test=alert.test,
        )
        event = Observation(ALERT_QUANTITY, dumps(alert.to_sdm(iso(alert.ts))), "")
        self.stage(alert.device, [event], alert.ts, Lane.ALERT)
        if alert.status == "alert" or rule.notify_clear:
            mails = [
                Observation(
                    MAIL_QUANTITY,
                    dumps(
                        {
                            "kind": "alert",
                            "group": g,
                            "key": mail_key(alert, g),
                            "alert": alert.to_dict(),
                        }
                    ),
                    "",
                )
                for g in rule.groups
            ]
            if mails:
                self.stage(alert.device, mails, alert.ts, Lane.MAIL)
        for listener in self.listeners:
            listener(alert)

    def test(self, name: str, device: str | None = None) -> Alert:
        """A technician's test alert for rule `name`: actions, platform event and e-mail,
        marked as a test, past the cooldown. Raises KeyError for an unknown rule."""
        rule = self.rules.get(name)
        if rule is None:
            known = ", ".join(self.rules) or "none"
            raise KeyError(f"unknown rule {name!r}; known: {known}")
        if device is None:
            device = self._test_device(rule)
        if device not in self.places and device not in self._subs:
            typed = typed_sub_device(device, self.places)
            if typed is not None:
                self._learn(device, *typed)
        value = rule.equals if rule.kind == "event" else None
        event = Event("alert", rule.name, device, value, self.clock.now())
        alert = self.alert(rule, event, test=True)
        self._act(rule)
        self.publish(rule, alert)
        return alert

    def _test_device(self, rule: Rule) -> str:
        """The device a test alert of `rule` is raised for when none is named: one the rule
        watches. Its first plain key; else the first configured device a pattern matches;
        else a `test` sub-device of one (`traps-test` for `traps-*`: traps are sub-devices of
        their receiver); else, when nothing configured can match, the first device."""
        plain = [d for d in rule.devices if not any(c in d for c in "*?[")]
        if plain:
            return plain[0]
        if rule.devices:
            subs = [sub_device_key(key, "test") for key in self.places]
            for key in (*self.places, *subs):
                if any(fnmatch.fnmatchcase(key, p) for p in rule.devices):
                    return key
        return next(iter(self.places), "test")
