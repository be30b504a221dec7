"""bench/startup.py runs the daemon as the shipped unit does: with the unit's watchdog."""

from __future__ import annotations

import re

import pytest

from bench.startup import UNIT, unit_watchdog_usec


def test_the_bench_gives_the_daemon_the_watchdog_the_unit_sets(tmp_path) -> None:
    (seconds,) = re.findall(r"^WatchdogSec=(\d+)$", UNIT.read_text(), re.M)
    assert unit_watchdog_usec() == str(int(seconds) * 1_000_000)
    unit = tmp_path / "gateway.service"
    unit.write_text("[Service]\nType=notify\nWatchdogSec=45\n")
    assert unit_watchdog_usec(unit) == "45000000"
    unit.write_text("[Service]\nType=notify\n")
    with pytest.raises(ValueError, match="no WatchdogSec"):
        unit_watchdog_usec(unit)
