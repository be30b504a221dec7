"""The serial driver through the CLI: `gateway decode` on its profiles, `gateway sim`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import cli
from tests.serial_rig import TRAPS, bus_toml, running_bus, until_available

ROOT = Path(__file__).resolve().parent.parent


def test_decode_takes_a_full_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["decode", "buoy-nmea", "$INMTW,17.9,C*1B"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"quantity": "water_temperature", "value": 17.9, "unit": "degC"}
    ]
    assert cli.main(["decode", "trap-receiver", "TRAP,17,TRIG,3012,-87*3C"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: bad checksum: line says 3C, content gives 3B"
    )


def test_sim_nmea_runs_on_a_pty_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sim", "nmea", "--seconds", "0.25", "--rate", "20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("NMEA buoy simulator on /dev/pts/")
    assert out[-1].startswith("NMEA buoy simulator sent ")
    assert int(out[-1].split()[-2]) > 0


def test_sim_trap_rejects_a_bad_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sim", "trap", "--script", "soon 17"]) == 2
    assert "bad --script" in capsys.readouterr().err


@contextlib.asynccontextmanager
async def trap_sim(link: Path, traps: str, script: str, seconds: str) -> AsyncIterator[None]:
    """`gateway sim trap` as a process on a pty linked at `link`, every message sent three
    times; yields once the simulator said where it listens, and stops it on exit."""
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "sim", "trap", "--link", str(link),
        "--traps", traps, "--heartbeat", "1000", "--repeats", "3",
        "--script", script, "--seconds", seconds,
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        first = await asyncio.wait_for(sim.stdout.readline(), 10)
        assert first.decode().strip() == f"trap receiver simulator on {link}"
        yield
    finally:
        if sim.returncode is None:
            sim.terminate()
        await sim.wait()


@pytest.mark.slow
async def test_sim_trap_process_feeds_a_bus_through_its_link(tmp_path: Path) -> None:
    link = tmp_path / "trap-rx"
    async with (
        trap_sim(link, "17,18", "2 17 TRIG; 2.5 18 FAULT", "6"),
        running_bus(bus_toml(str(link), TRAPS)) as r,
    ):
        await until_available(r.sink, "rx")
        await r.sink.wait_for(
            lambda s: (
                s.values("rx-17", "trap_state") == ["triggered"]
                and s.values("rx-18", "trap_state") == ["fault"]
            )
        )
        # Two events sent three times each; the t=0 heartbeats are normally flushed by
        # the port opening, but may land if the bus was quicker than the simulator.
        assert r.bus.stats()["duplicates"] in (4, 8)


@pytest.mark.slow
async def test_sim_trap_set_trig_set_trig_within_six_seconds_is_four_events(tmp_path: Path) -> None:
    """The trap simulator process on a real pty: one trap SET, TRIG, SET, TRIG within 6 s,
    every message sent three times. All four events arrive; the second animal is not lost."""
    link = tmp_path / "trap-rx"
    script = "2 17 SET; 3.5 17 TRIG; 5 17 SET; 6.5 17 TRIG"
    async with (
        trap_sim(link, "17", script, "8"),
        running_bus(bus_toml(str(link), TRAPS)) as r,
    ):
        await until_available(r.sink, "rx")
        want = ["set", "triggered", "set", "triggered"]
        await r.sink.wait_for(lambda s: s.values("rx-17", "trap_state") == want)
        # Four events three times each; the t=0 heartbeat may land too (see above).
        assert r.bus.stats()["duplicates"] in (8, 10)
