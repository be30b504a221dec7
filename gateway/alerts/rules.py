"""Alert rules as pure state machines: a reading or a clock tick in, alert/clear events out.

One `RuleState` per (rule, device key). Kinds:
- threshold: `above` or `below` a limit, cleared past the limit by `hysteresis`, raised only
  after the condition held for `hold` seconds (reading timestamps and ticks both count).
- battery: a threshold `below` on the `battery` quantity (a kind of its own so configs read well).
- event: the value *becomes* `equals` (trap_state "triggered", motion true); cleared when it
  changes away.
- stale: the device sent nothing for `silent` seconds; cleared by its next reading.
- rate: the value changed by `per_minute` or faster (a negative limit: falling that fast)
  over the last `window` seconds.
`Cooldown` folds repeats: an alert within `cooldown` seconds of the last reported one is
counted, not reported; the next reported alert carries the count and the first folded time.
Clearing is reported once, and only for an alert that was reported.
No I/O, no clock, no logging here: callers pass timestamps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.model import Value

KINDS = ("threshold", "event", "stale", "battery", "rate")
SEVERITIES = ("informational", "low", "medium", "high", "critical")  # SDM Alert severity


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    quantity: str = ""
    devices: tuple[str, ...] = ()  # device keys or fnmatch patterns; empty = every device
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    hold: float = 0.0
    equals: Value | None = None
    silent: float = 0.0
    per_minute: float = 0.0
    window: float = 600.0
    severity: str = "medium"
    category: str = "agriculture"
    subcategory: str = ""
    groups: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    cooldown: float = 0.0
    notify_clear: bool = True
    description: str = ""


@dataclass(frozen=True)
class Event:
    """What a rule reports: `alert` (raised) or `clear` (back to normal)."""

    kind: str
    rule: str
    device: str
    value: Value | None
    ts: float
    folded: int = 0  # repeats folded into this alert by the cooldown
    folded_since: float | None = None


@dataclass
class RuleState:
    """The state machine of one rule for one device key."""

    rule: Rule
    device: str
    active: bool = False
    since: float | None = None  # when the condition started (hold time) / last seen (stale)
    last: Value | None = None
    history: deque[tuple[float, float]] = field(default_factory=deque)

    def feed(self, ts: float, value: Value) -> list[Event]:
        """A reading of the rule's quantity (any reading at all for a stale rule)."""
        kind = self.rule.kind
        if kind == "stale":
            self.since = ts
            return self._set(False, ts, value)
        if kind == "event":
            hit = value == self.rule.equals
            was = self.last == self.rule.equals
            self.last = value
            if hit and not was:
                return self._raise(ts, value)
            if not hit and self.active:
                return self._set(False, ts, value)
            return []
        if isinstance(value, bool) or not isinstance(value, int | float):
            return []  # a numeric rule ignores text values (a fault code) rather than guess
        v = float(value)
        self.last = v
        if kind == "rate":
            return self._rate(ts, v)
        return self._threshold(ts, v)

    def tick(self, now: float) -> list[Event]:
        """Time passed without a reading: hold timers expire, silent devices go stale."""
        rule = self.rule
        if rule.kind == "stale":
            if not self.active and self.since is not None and now - self.since >= rule.silent:
                return self._raise(now, None)
            return []
        if (
            rule.kind in ("threshold", "battery")
            and not self.active
            and self.since is not None
            and now - self.since >= rule.hold
        ):
            return self._raise(now, self.last)
        return []

    def _threshold(self, ts: float, v: float) -> list[Event]:
        rule = self.rule
        if rule.above is not None:
            bad = v > rule.above
            good = v <= rule.above - rule.hysteresis
        else:
            assert rule.below is not None
            bad = v < rule.below
            good = v >= rule.below + rule.hysteresis
        if self.active:
            return self._set(False, ts, v) if good else []
        if not bad:
            self.since = None  # the hold time restarts on any good reading
            return []
        if self.since is None:
            self.since = ts
        if ts - self.since >= rule.hold:
            return self._raise(ts, v)
        return []

    def _rate(self, ts: float, v: float) -> list[Event]:
        rule = self.rule
        self.history.append((ts, v))
        # The base is the newest reading at least `window` old (or the oldest one), so a
        # sparse series still has two points to compare.
        while len(self.history) > 2 and ts - self.history[1][0] >= rule.window:
            self.history.popleft()
        t0, v0 = self.history[0]
        if ts - t0 <= 0:
            return []
        slope = (v - v0) / ((ts - t0) / 60.0)
        fast = slope <= rule.per_minute if rule.per_minute < 0 else slope >= rule.per_minute
        if fast and not self.active:
            return self._raise(ts, v)
        if not fast and self.active:
            return self._set(False, ts, v)
        return []

    def _raise(self, ts: float, value: Value | None) -> list[Event]:
        self.active = True
        return [Event("alert", self.rule.name, self.device, value, ts)]

    def _set(self, active: bool, ts: float, value: Value | None) -> list[Event]:
        was = self.active
        self.active = active
        if was and not active:
            self.since = ts if self.rule.kind == "stale" else None
            return [Event("clear", self.rule.name, self.device, value, ts)]
        return []


@dataclass
class Cooldown:
    """Folds repeated alerts of one (rule, device) within `seconds` of the last reported one."""

    seconds: float
    reported_at: float | None = None
    folded: int = 0
    folded_since: float | None = None
    open: bool = False  # a reported alert is waiting for its clear

    def admit(self, event: Event) -> Event | None:
        """The event to report (alerts carry the fold count), or None when folded."""
        if event.kind == "clear":
            if not self.open:
                return None
            self.open = False
            return event
        if self.reported_at is not None and event.ts - self.reported_at < self.seconds:
            self.folded += 1
            if self.folded_since is None:
                self.folded_since = event.ts
            return None
        out = Event(
            "alert", event.rule, event.device, event.value, event.ts, self.folded, self.folded_since
        )
        self.reported_at, self.folded, self.folded_since, self.open = event.ts, 0, None, True
        return out
