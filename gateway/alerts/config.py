"""The `[alerts]` part of the config: rules, recipient groups, SMTP, local actions, quiet hours,
digest. Parsed once with gateway.section (path-qualified errors with did-you-mean) into frozen
values; nothing downstream sees a dict. No I/O besides nothing: password files are read by the
mailer when it connects, never here.

    [alerts]
    quiet_hours = { start = "21:00", end = "05:30" }   # site-local time (gateway.timezone)

    [alerts.groups.farmers]
    to = ["tanaka@example.jp"]
    language = "ja"            # "ja" (default) or "en"

    [alerts.smtp]
    host = "smtp.example.jp"
    port = 587
    security = "starttls"      # "starttls" | "tls" (implicit, port 465) | "none" (tests only)
    username = "gateway"
    password_file = "/etc/gateway/smtp.secret"
    from = "gateway@example.jp"

    [alerts.actions.siren]
    device = "relay-1"         # a relay module (ctx.actuators) and its channel
    channel = 1
    seconds = 30
    max_seconds = 600          # the longest a platform command may run it (default 600,
                               # or `seconds` when that is longer)
    pattern = [1.0, 0.5]       # on, off seconds repeated; empty = steady
    at_night = "skip"          # "run" | "skip" during quiet hours

    [[alerts.rules]]
    name = "trap"
    kind = "event"
    quantity = "trap_state"
    equals = "triggered"
    severity = "high"
    groups = ["farmers", "hunters"]
    actions = ["siren", "flash"]
    cooldown = 600

    [alerts.digest]
    at = "18:00"
    groups = ["farmers"]
    resolution = 600           # s per point of the digest's charts (10 .. 3600)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.alerts.rules import KINDS, SEVERITIES, Rule
from gateway.section import Section

LANGUAGES = ("ja", "en")
SECURITY = ("starttls", "tls", "none")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

# What an event rule's defaults are: SDM Alert category / subCategory for common quantities.
_SUBCATEGORY = {"trap_state": "animalTrapped", "motion": "animalDetected"}


@dataclass(frozen=True)
class Group:
    name: str
    to: tuple[str, ...]
    language: str = "ja"


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password_file: str = ""
    sender: str = "gateway@localhost"
    ca_file: str = ""  # extra CA bundle for a private mail server's certificate
    timeout: float = 30.0
    retry_min: float = 10.0
    retry_max: float = 600.0


@dataclass(frozen=True)
class ActionConfig:
    name: str
    device: str
    channel: int
    seconds: float = 30.0
    pattern: tuple[float, ...] = ()
    at_night: str = "run"
    max_seconds: float = 600.0  # the longest a platform command (`siren`) may run it


@dataclass(frozen=True)
class DigestConfig:
    at: tuple[int, int] = (18, 0)
    groups: tuple[str, ...] = ()
    quantities: tuple[str, ...] = ("water_level", "water_temperature")
    resolution: int = 600  # s per chart point (a daybook bucket)


@dataclass(frozen=True)
class AlertsConfig:
    rules: tuple[Rule, ...] = ()
    groups: dict[str, Group] = field(default_factory=dict)
    smtp: SmtpConfig | None = None
    actions: dict[str, ActionConfig] = field(default_factory=dict)
    quiet_hours: tuple[tuple[int, int], tuple[int, int]] | None = None
    digest: DigestConfig | None = None
    map_zoom: int = 16

    @property
    def configured(self) -> bool:
        return bool(self.rules or self.actions or self.digest)

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def _hhmm(s: Section, key: str, default: str | None) -> tuple[int, int]:
    text = s.text(key, default) if default is not None else s.text(key)
    m = _HHMM.match(text or "")
    if not m:
        s.problem(key, f'expected a local time "HH:MM", got "{text}"')
        return (0, 0)
    return int(m.group(1)), int(m.group(2))


def parse(s: Section, device_ids: set[str]) -> AlertsConfig:
    """Read `[alerts]`; `device_ids` are the configured devices (to check action relays)."""
    groups = _groups(s)
    smtp = _smtp(s) if s.has("smtp") else None
    actions = _actions(s, device_ids)
    quiet = None
    if s.has("quiet_hours"):
        q = s.section("quiet_hours")
        quiet = (_hhmm(q, "start", None), _hhmm(q, "end", None))
        q.finish()
    digest = _digest(s.section("digest"), groups) if s.has("digest") else None
    rules = tuple(_rule(r, groups, actions) for r in s.sections("rules"))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            s.problem(f"rules[{i}].name", f'duplicate rule name "{rule.name}"')
        seen.add(rule.name)
    if (any(r.groups for r in rules) or digest is not None) and smtp is None:
        s.problem("smtp", "rules send e-mail to groups but [alerts.smtp] is missing")
    cfg = AlertsConfig(
        rules=rules,
        groups=groups,
        smtp=smtp,
        actions=actions,
        quiet_hours=quiet,
        digest=digest,
        map_zoom=s.integer("map_zoom", 16, lo=1, hi=18),
    )
    s.finish()
    return cfg


def _groups(s: Section) -> dict[str, Group]:
    groups = {}
    g_all = s.section("groups")
    for name in list(g_all.raw):
        g = g_all.section(name)
        groups[name] = Group(name, g.strings("to"), g.text("language", "ja", choices=LANGUAGES))
        if not groups[name].to:
            g.problem("to", "a recipient group needs at least one address")
        g.finish()
    g_all.finish(groups)
    return groups


def _smtp(s: Section) -> SmtpConfig:
    m = s.section("smtp")
    security = m.text("security", "starttls", choices=SECURITY)
    smtp = SmtpConfig(
        host=m.text("host"),
        port=m.integer("port", 465 if security == "tls" else 587, lo=1, hi=65535),
        security=security,
        username=m.text("username", ""),
        password_file=m.text("password_file", ""),
        sender=m.text("from"),
        ca_file=m.text("ca_file", ""),
        timeout=m.number("timeout", 30.0, lo=1, hi=600),
        retry_min=m.number("retry_min", 10.0, lo=0.01, hi=3600),
        retry_max=m.number("retry_max", 600.0, lo=0.01, hi=86400),
    )
    if smtp.password_file and not smtp.username:
        m.problem("username", "password_file is set but username is missing")
    m.finish()
    return smtp


def _actions(s: Section, device_ids: set[str]) -> dict[str, ActionConfig]:
    actions = {}
    a_all = s.section("actions")
    for name in list(a_all.raw):
        a = a_all.section(name)
        pattern = a.value("pattern", [])
        if not isinstance(pattern, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in pattern
        ):
            a.problem("pattern", "expected an array of positive seconds [on, off, ...]")
            pattern = []
        seconds = a.number("seconds", 30.0, lo=0.1, hi=86400)
        action = ActionConfig(
            name,
            device=a.text("device"),
            channel=a.integer("channel", 1, lo=1, hi=65536),
            seconds=seconds,
            pattern=tuple(float(x) for x in pattern),
            at_night=a.text("at_night", "run", choices=("run", "skip")),
            max_seconds=a.number("max_seconds", max(600.0, seconds), lo=0.1, hi=86400),
        )
        if action.seconds > action.max_seconds:
            a.problem("seconds", f"longer than max_seconds ({action.max_seconds:g})")
        if action.device and action.device not in device_ids:
            a.problem("device", f'no configured device "{action.device}"')
        actions[name] = action
        a.finish()
    a_all.finish(actions)
    return actions


def _digest(d: Section, groups: dict[str, Group]) -> DigestConfig:
    digest = DigestConfig(
        at=_hhmm(d, "at", "18:00"),
        groups=d.strings("groups"),
        quantities=d.strings("quantities", DigestConfig.quantities),
        resolution=d.integer("resolution", DigestConfig.resolution, lo=10, hi=3600),
    )
    for wanted in digest.groups:
        if wanted not in groups:
            known = ", ".join(groups)
            d.problem("groups", f'unknown recipient group "{wanted}"; known: {known}')
    d.finish()
    return digest


def _rule(r: Section, groups: dict[str, Group], actions: dict[str, ActionConfig]) -> Rule:
    kind = r.text("kind", choices=KINDS)
    default_q = "battery" if kind == "battery" else ""
    quantity = r.text("quantity", default_q) if kind != "stale" else r.text("quantity", "")
    if kind in ("threshold", "event", "rate") and not quantity:
        r.problem("quantity", f"a {kind} rule needs the quantity it watches")
    above = r.number("above", None) if kind == "threshold" else None
    below = r.number("below", None) if kind in ("threshold", "battery") else None
    if kind == "threshold" and (above is None) == (below is None):
        r.problem(None, "a threshold rule needs exactly one of `above` or `below`")
    if kind == "battery" and below is None:
        r.problem("below", "a battery rule needs `below` (in the battery's unit, V or %)")
    raw_equals = r.value("equals", None) if kind == "event" else None
    equals = raw_equals if isinstance(raw_equals, str | bool | int | float) else None
    if kind == "event" and equals is None:
        r.problem("equals", "an event rule needs `equals` (a string, number or boolean)")
    silent = r.number("minutes", 0.0, lo=0.1) * 60 if kind == "stale" else 0.0
    if kind == "stale" and not silent:
        r.problem("minutes", "a stale rule needs `minutes` of silence")
    per_minute = r.number("per_minute", 0.0) if kind == "rate" else 0.0
    if kind == "rate" and per_minute == 0:
        r.problem("per_minute", "a rate rule needs a non-zero `per_minute` (negative = falling)")
    rule = Rule(
        name=r.text("name"),
        kind=kind,
        quantity=quantity,
        devices=r.strings("devices", ()),
        above=above,
        below=below,
        hysteresis=r.number("hysteresis", 0.0, lo=0) if kind in ("threshold", "battery") else 0.0,
        hold=r.number("hold", 0.0, lo=0) if kind in ("threshold", "battery") else 0.0,
        equals=equals,
        silent=silent,
        per_minute=per_minute,
        window=r.number("window", 600.0, lo=1) if kind == "rate" else 600.0,
        severity=r.text("severity", "medium", choices=SEVERITIES),
        category=r.text("category", "agriculture"),
        subcategory=r.text("subcategory", _SUBCATEGORY.get(quantity, "")),
        groups=r.strings("groups", ()),
        actions=r.strings("actions", ()),
        cooldown=r.number("cooldown", 600.0, lo=0),
        notify_clear=r.flag("notify_clear", kind != "event"),
        description=r.text("description", ""),
    )
    for g in rule.groups:
        if g not in groups:
            r.problem("groups", f'unknown recipient group "{g}"; known: {", ".join(groups)}')
    for a in rule.actions:
        if a not in actions:
            r.problem("actions", f'unknown action "{a}"; known: {", ".join(actions)}')
    r.finish()
    return rule
