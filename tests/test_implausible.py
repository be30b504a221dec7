"""Implausible values are flagged, not dropped: stored with their flag in a real outbox file,
counted, logged once per transition, seen by the alert rules and shown in the status report.
NaN and infinities stay refused, counted and logged per transition too. (The payload formats'
flag: tests/test_payload.py.)"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import structlog

from gateway.clock import FixedClock
from gateway.model import Lane, Observation
from gateway.notify import Notifier
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.report import Report
from gateway.runtime import build_runtime
from tests.alert_setup import config_text, parse, stack
from tests.test_serial_decode import library_profile


class RecordingLog:
    """A structlog-style logger that keeps (level, event, context) in order."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def bind(self, **context: Any) -> RecordingLog:
        return self

    def _record(self, level: str, event: str, context: dict[str, Any]) -> None:
        self.lines.append((level, event, context))

    def info(self, event: str, **context: Any) -> None:
        self._record("info", event, context)

    def warning(self, event: str, **context: Any) -> None:
        self._record("warning", event, context)

    def events(self) -> list[tuple[str, str, str]]:
        return [
            (event, c.get("device", ""), c.get("quantity", ""))
            for _level, event, c in self.lines
            if "clock" not in event
        ]


def flat_battery_line() -> list[Observation]:
    """The trap receiver profile's own vector: a 1.2 V battery is outside 2.0..4.5 V."""
    return library_profile("trap-receiver").decoder.decode("TRAP,17,SET,1200,-90", {})


async def test_a_flagged_value_is_stored_with_its_flag_and_survives_the_file(tmp_path: Path):
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        async with Pipeline(ob, clock=FixedClock(1.8e9), log=RecordingLog()) as pipe:
            await pipe.emit("traps", flat_battery_line())
        assert pipe.implausible == 1 and pipe.refused == 0
    async with Outbox.open(path) as ob:
        rows = await ob.peek()
    assert [(r.device, r.quantity, r.value, r.plausible) for r in rows] == [
        ("traps-17", "trap_state", "set", True),
        ("traps-17", "voltage", 1.2, False),
        ("traps-17", "rssi", -90, True),
    ]


async def test_implausible_and_non_finite_values_are_logged_per_transition(tmp_path: Path):
    log = RecordingLog()
    async with Outbox.open(tmp_path / "o.db") as ob:
        async with Pipeline(ob, clock=FixedClock(1.8e9), log=log) as pipe:
            for _ in range(5):  # a flat battery, every poll
                await pipe.emit("rx", [Observation("voltage", 1.2, "V", "17", plausible=False)])
            await pipe.emit("rx", [Observation("voltage", 3.1, "V", "17")])  # replaced
            await pipe.emit("rx", [Observation("voltage", 3.1, "V", "17")])
            for _ in range(3):  # a probe gone mad: NaN, +inf, NaN
                await pipe.emit("buoy", [Observation("water_temperature", float("nan"), "degC")])
                await pipe.emit("buoy", [Observation("water_temperature", float("inf"), "degC")])
            await pipe.emit("buoy", [Observation("water_temperature", 17.9, "degC")])
        rows = await ob.peek()
    assert log.events() == [
        ("implausible value flagged", "rx-17", "voltage"),
        ("value plausible again", "rx-17", "voltage"),
        ("non-finite value refused", "buoy", "water_temperature"),
        ("value plausible again", "buoy", "water_temperature"),
    ]
    assert (pipe.implausible, pipe.refused) == (5, 6)
    # Flagged values are forwarded; refused ones are not (they have no JSON form).
    assert [r.value for r in rows if r.quantity == "voltage"] == [1.2] * 5 + [3.1] * 2
    assert [r.value for r in rows if r.quantity == "water_temperature"] == [17.9]


async def test_a_flat_battery_reaches_the_battery_rule(tmp_path: Path):
    rule = """
[[alerts.rules]]
name = "trap-battery"
kind = "battery"
quantity = "voltage"
below = 2.5
severity = "low"
"""
    # No recipient groups: the platform event is what this test reads, and no mail row sends
    # the mailer to the config's fixed SMTP port (something else may be listening there).
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite"), extra=rule))
    async with stack(cfg, tmp_path / "o.sqlite", {}) as (box, pipe, _alerting):
        await pipe.emit("traps", flat_battery_line())
        await pipe.flush()
        alerts = [json.loads(str(r.value)) for r in await box.peek(Lane.ALERT)]
    assert [(a["alertSource"], a["subCategory"]) for a in alerts] == [
        ("traps-17", "trap-battery")
    ], alerts


async def test_status_report_counts_flagged_and_refused_values(tmp_path: Path):
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    log = structlog.get_logger().bind(test=True)
    clock = FixedClock(1.8e9)
    async with contextlib.AsyncExitStack() as exits:
        rt = await build_runtime(exits, cfg, clock=clock, log=log, hub=None, commands={})
        rt.pipeline.stage("traps", flat_battery_line())
        rt.pipeline.stage("paddy-01", [Observation("water_level", float("nan"), "cm")])
        snapshot = Report(rt, clock=clock, notifier=Notifier("")).snapshot()
    assert snapshot["values_implausible"] == {"flagged": 1, "refused": 1}
