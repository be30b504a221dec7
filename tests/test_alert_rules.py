"""Rules as pure state machines, table-driven: (time, value or tick) in, events out; the
cooldown's folding; the engine's routing of readings to rules; the [alerts] config errors."""

from __future__ import annotations

import pytest
import structlog

from gateway.alerts.config import AlertsConfig
from gateway.alerts.engine import AlertEngine, Place
from gateway.alerts.rules import Cooldown, Event, Rule, RuleState
from gateway.clock import FixedClock
from gateway.errors import ConfigError
from gateway.model import Lane, Reading
from tests.alert_setup import config_text, parse

TICK = object()


def run(rule: Rule, steps: list[tuple[float, object]]) -> list[tuple[float, str]]:
    """Feed (ts, value) steps (value TICK = a clock tick); return (ts, event kind) pairs."""
    state = RuleState(rule, "dev")
    out = []
    for ts, value in steps:
        events = state.tick(ts) if value is TICK else state.feed(ts, value)  # type: ignore[arg-type]
        out += [(e.ts, e.kind) for e in events]
    return out


HIGH = Rule("high", "threshold", "water_level", above=10.0, hysteresis=1.0)
HOLD = Rule("hot", "threshold", "water_temperature", above=30.0, hysteresis=0.5, hold=300)
LOW_BATT = Rule("batt", "battery", "battery", below=3.4, hysteresis=0.1)


@pytest.mark.parametrize(
    ("rule", "steps", "expected"),
    [
        # Hysteresis: 10.5 raises; 9.5 is inside the band (no clear), 8.9 clears; once each.
        (
            HIGH,
            [(0, 9.0), (1, 10.5), (2, 11.0), (3, 9.5), (4, 10.2), (5, 8.9), (6, 8.0)],
            [(1, "alert"), (5, "clear")],
        ),
        # Exactly at the limit is not above it; exactly at limit - hysteresis clears.
        (HIGH, [(0, 10.0), (1, 10.01), (2, 9.0)], [(1, "alert"), (2, "clear")]),
        # Hold time: 300 s above before it counts; a good reading in between restarts it.
        (
            HOLD,
            [(0, 31), (200, 31), (250, 29), (260, 31), (500, 31), (560, 31), (600, 29.4)],
            [(560, "alert"), (600, "clear")],
        ),
        # A clock tick ends the hold even with no new reading (a sensor that reports hourly).
        (HOLD, [(0, 31), (100, TICK), (300, TICK), (400, TICK)], [(300, "alert")]),
        # Text values (a fault code) are ignored by numeric rules.
        (HIGH, [(0, "E1"), (1, True), (2, 12.0)], [(2, "alert")]),
        # Battery low with its own hysteresis.
        (
            LOW_BATT,
            [(0, 3.6), (1, 3.39), (2, 3.45), (3, 3.35), (4, 3.5)],
            [(1, "alert"), (4, "clear")],
        ),
    ],
    ids=["hysteresis", "edges", "hold", "hold-by-tick", "non-numeric", "battery"],
)
def test_threshold_tables(rule, steps, expected):
    assert run(rule, steps) == expected


TRAP = Rule("trap", "event", "trap_state", equals="triggered")
MOTION = Rule("motion", "event", "motion", equals=True)
STALE = Rule("silent", "stale", silent=1800)
FALL = Rule("levee", "rate", "water_level", per_minute=-0.5, window=600)


@pytest.mark.parametrize(
    ("rule", "steps", "expected"),
    [
        # "becomes": a trap reporting triggered every poll raises once; re-arming clears.
        (
            TRAP,
            [(0, "set"), (1, "triggered"), (2, "triggered"), (3, "set"), (4, "triggered")],
            [(1, "alert"), (3, "clear"), (4, "alert")],
        ),
        (TRAP, [(0, "triggered")], [(0, "alert")]),  # already triggered at boot still counts
        (TRAP, [(0, "fault"), (1, "set")], []),
        (MOTION, [(0, False), (1, True), (2, True), (3, False)], [(1, "alert"), (3, "clear")]),
        # Stale: silent 30 min after the last reading; the next reading clears once.
        (
            STALE,
            [(0, 1), (1000, TICK), (1799, TICK), (1800, TICK), (2000, TICK), (2100, 5)],
            [(1800, "alert"), (2100, "clear")],
        ),
        # Rate of change: 5 cm in 5 minutes is 1 cm/min falling (a breached levee).
        (
            FALL,
            [(0, 6.0), (60, 5.9), (120, 5.8), (300, 3.5), (360, 3.0), (1200, 3.3)],
            [(300, "alert"), (1200, "clear")],
        ),
        # Rising fast does not trigger a falling rule.
        (FALL, [(0, 1.0), (60, 5.0)], []),
    ],
    ids=["trap", "trap-at-boot", "trap-fault", "motion", "stale", "rate", "rate-rising"],
)
def test_event_stale_rate_tables(rule, steps, expected):
    assert run(rule, steps) == expected


def test_cooldown_folds_repeats_and_reports_one_clear():
    cd = Cooldown(600)
    seen = []
    for kind, ts in [
        ("alert", 0),
        ("clear", 10),
        ("alert", 100),  # folded
        ("clear", 110),  # no clear for a folded alert
        ("alert", 298),  # folded
        ("alert", 700),  # reported with the two folded repeats
        ("clear", 710),
        ("clear", 720),  # already cleared: nothing
    ]:
        out = cd.admit(Event(kind, "trap", "traps-1", None, ts))
        if out is not None:
            seen.append((out.kind, out.ts, out.folded, out.folded_since))
    assert seen == [
        ("alert", 0, 0, None),
        ("clear", 10, 0, None),
        ("alert", 700, 2, 100),
        ("clear", 710, 0, None),
    ]


def _engine(cfg: AlertsConfig, staged: list, clock: FixedClock) -> AlertEngine:
    return AlertEngine(
        cfg,
        {"traps": Place("Receiver", 36.1, 137.9)},
        stage=lambda dev, obs, ts, lane: staged.append((dev, [o.quantity for o in obs], lane)),
        clock=clock,
        log=structlog.get_logger(),
        site=Place("Site", 35.0, 135.0),
    )


def _reading(
    seq: int, device: str, q: str, v: object, ts: float, parent: str | None = None
) -> Reading:
    return Reading(seq, device, q, v, "", ts, parent=parent)  # type: ignore[arg-type]


def test_engine_routes_readings_and_folds_mail_but_not_siren():
    cfg = parse(config_text()).alerts
    clock = FixedClock(1_790_000_000.0)
    staged: list = []
    engine = _engine(cfg, staged, clock)
    t = clock.t
    engine.observe([_reading(1, "traps-7", "trap_state", "triggered", t, "traps")])
    engine.observe([_reading(2, "traps-7", "trap_state", "set", t + 60, "traps")])
    engine.observe([_reading(3, "traps-7", "trap_state", "triggered", t + 120, "traps")])
    # Our own alert/mail rows coming back through the pipeline are ignored.
    engine.observe([Reading(4, "traps-7", "trap_state", "triggered", "", t, lane=Lane.ALERT)])
    lanes = [lane for _d, _q, lane in staged]
    # alert -> event + 2 mails; clear -> event only (event rules mail no clears); the
    # second trigger within the cooldown is folded (no rows at all).
    assert lanes == [Lane.ALERT, Lane.MAIL, Lane.ALERT]
    assert staged[1][1] == ["mail", "mail"]
    # Trap 7's readings name receiver `traps` as their parent: the alert is placed there.
    assert engine.place("traps-7") == (Place("Receiver", 36.1, 137.9), "7")
    # A key no reading introduced is not taken apart by its prefix: it is placed at the site.
    assert engine.place("traps-8")[1] is None
    assert engine.place("unknown")[0].latitude == 35.0  # falls back to the site position


def test_stale_rule_watches_named_devices_from_the_start():
    extra = """
[[alerts.rules]]
name = "trap-silent"
kind = "stale"
devices = ["traps-1", "traps-2"]
minutes = 30
severity = "low"
"""
    cfg = parse(config_text(extra=extra)).alerts
    clock = FixedClock(1_790_000_000.0)
    staged: list = []
    engine = _engine(cfg, staged, clock)
    engine.observe([_reading(1, "traps-1", "battery", 3.5, clock.t + 600)])
    engine.tick(clock.t + 1800)
    assert [d for d, _q, lane in staged if lane == Lane.ALERT] == ["traps-2"]
    engine.tick(clock.t + 600 + 1800)
    assert [d for d, _q, lane in staged if lane == Lane.ALERT] == ["traps-2", "traps-1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[alerts.rules]]\nname = "x"\nkind = "treshold"\nquantity = "a"\nabove = 1\n',
            "alerts.rules[2].kind: expected one of threshold, event, stale, battery, rate; "
            'got "treshold" (did you mean "threshold"?)',
        ),
        (
            '[[alerts.rules]]\nname = "x"\nkind = "threshold"\nquantity = "a"\nabove = 1\n'
            'groups = ["farmer"]\n',
            'alerts.rules[2].groups: unknown recipient group "farmer"; known: farmers, hunters',
        ),
        (
            '[[alerts.rules]]\nname = "x"\nkind = "threshold"\nquantity = "a"\n',
            "alerts.rules[2]: a threshold rule needs exactly one of `above` or `below`",
        ),
        (
            '[[alerts.rules]]\nname = "x"\nkind = "event"\nquantity = "a"\nequals = "b"\n'
            "coolddown = 5\n",
            'alerts.rules[2].coolddown: unknown key (did you mean "cooldown"?)',
        ),
        (
            '[alerts.quiet_hours]\nstart = "25:00"\nend = "05:00"\n',
            'alerts.quiet_hours.start: expected a local time "HH:MM", got "25:00"',
        ),
        (
            '[alerts.digest]\nat = "18:00"\ngroups = ["nobody"]\n',
            'alerts.digest.groups: unknown recipient group "nobody"; known: farmers, hunters',
        ),
    ],
    ids=["kind-typo", "group", "threshold", "unknown-key", "quiet", "digest-group"],
)
def test_config_errors_are_path_qualified(extra, message):
    with pytest.raises(ConfigError) as err:
        parse(config_text(extra=extra))
    assert message in [str(p) for p in err.value.problems]


def test_action_on_an_unknown_device_is_a_config_error():
    text = config_text().replace(
        'device = "relay-1"\nchannel = 1', 'device = "relay-9"\nchannel = 1'
    )
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert 'alerts.actions.siren.device: no configured device "relay-9"' in [
        str(p) for p in err.value.problems
    ]


def test_a_restart_with_the_trap_still_triggered_neither_sounds_nor_mails_again(tmp_path):
    cfg = parse(config_text()).alerts
    clock = FixedClock(1_790_000_000.0)
    memory = tmp_path / "alert-state.json"

    def engine(staged: list) -> AlertEngine:
        return AlertEngine(
            cfg,
            {},
            stage=lambda dev, obs, ts, lane: staged.append((dev, lane)),
            clock=clock,
            log=structlog.get_logger(),
            memory=memory,
        )

    first: list = []
    engine(first).observe([_reading(1, "traps-7", "trap_state", "triggered", clock.t)])
    assert [lane for _d, lane in first] == [Lane.ALERT, Lane.MAIL]
    second: list = []
    again = engine(second)  # the daemon restarted (or reloaded its config)
    again.observe([_reading(2, "traps-7", "trap_state", "triggered", clock.t + 30)])
    assert second == []
    again.observe([_reading(3, "traps-7", "trap_state", "set", clock.t + 60)])
    assert second == [("traps-7", Lane.ALERT)]  # the clear is still reported, once
    # A garbled state file is survivable.
    memory.write_text("{not json")
    third: list = []
    engine(third).observe([_reading(4, "traps-7", "trap_state", "triggered", clock.t + 90)])
    assert [lane for _d, lane in third] == [Lane.ALERT, Lane.MAIL]


def test_a_typed_sub_device_key_resolves_only_to_what_the_pipeline_could_have_built():
    from gateway.model import sub_device_key, typed_sub_device

    devices = ["traps", "traps-north", "paddy"]
    assert typed_sub_device("traps-12", devices) == ("traps", "12")
    # The longest configured id wins: trap 3 behind `traps-north`, not `north-3` behind `traps`.
    assert typed_sub_device("traps-north-3", devices) == ("traps-north", "3")
    assert typed_sub_device(sub_device_key("traps", "a b/#"), devices) == ("traps", "a_b__")
    assert typed_sub_device("traps", devices) is None  # a configured device, no sub-device
    assert typed_sub_device("traps-", devices) is None
    assert typed_sub_device("traps-a b", devices) is None  # not a key the pipeline builds
    assert typed_sub_device("orchard-1", devices) is None
