"""Back-pressure: the uplink's right of way over intake (gateway.outbox.priority), the
imbalance watch (gateway.outbox.pressure) in the log and in `gateway status`, and the opt-in
averaging policy (gateway.outbox.averaging) with its config keys. Counts and states only:
delivered/s at 1x, 2x, 4x offered is bench/pressure.py's figure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.cli import status as status_cli
from gateway.config import loader as config
from gateway.errors import ConfigError
from gateway.model import Lane, Observation, Reading
from gateway.outbox.averaging import Averaging
from gateway.outbox.pressure import Pressure
from gateway.outbox.priority import FREE, PUBACK_HOLD, SLICE, Priority
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.uplink.order import DrainOrder
from gateway.uplink.readahead import AHEAD_ROWS
from gateway.uplink.session import Uplink
from tests.relay import Relay
from tests.test_uplink import BASE, make_uplink, readings, running, seqs_from_json, wait_until

# -- the right of way -----------------------------------------------------------------------


async def test_intake_waits_while_the_uplink_claims_and_goes_when_it_releases():
    p = Priority(max_hold=30.0)
    await p.give_way()  # nothing claimed: at once
    assert p.yields == 0
    order: list[str] = []
    p.claim()

    async def intake() -> None:
        await p.give_way()
        order.append("intake")

    task = asyncio.create_task(intake())
    for _ in range(5):
        await asyncio.sleep(0)
    order.append("uplink round")
    p.release()
    await task
    assert order == ["uplink round", "intake"]
    assert (p.yields, p.overruns) == (1, 0)


async def test_intake_that_runs_on_lets_the_loop_turn_once_a_slice_is_used():
    # A fast source's emits come closer together than SLICE: the loop must still read its
    # sockets (a PUBACK) every SLICE of intake, or a claimed round starts late.
    now = [0.0]
    p = Priority(monotonic=lambda: now[0])
    turns: list[float] = []
    await p.give_way()
    asyncio.get_running_loop().call_soon(lambda: turns.append(now[0]))
    now[0] = SLICE * 0.5
    await p.give_way()
    assert turns == []  # inside the slice: no pass of the loop
    now[0] = SLICE * 1.2  # 0.7 slice after the last call, 1.2 into the slice
    await p.give_way()
    assert turns == [SLICE * 1.2]  # the loop ran what was ready before intake went on


async def test_intake_back_from_a_pause_starts_a_new_slice_without_a_loop_turn():
    # An idle site: one reading in a while. The loop read its sockets while the bus waited,
    # so the reading goes on at once (two passes of the loop per reading cost idle CPU).
    now = [0.0]
    p = Priority(monotonic=lambda: now[0])
    await p.give_way()
    turns: list[float] = []
    asyncio.get_running_loop().call_soon(lambda: turns.append(now[0]))
    now[0] = 0.6
    await p.give_way()
    assert turns == []
    now[0] = 0.6 + SLICE * 0.5
    await p.give_way()
    assert turns == []  # the new slice started at 0.6
    now[0] = 0.6 + SLICE * 1.2
    await p.give_way()
    assert turns == [0.6 + SLICE * 1.2]


async def test_intake_is_never_starved_by_an_uplink_that_never_releases():
    p = Priority(max_hold=0.01)
    p.claim()
    await p.give_way()  # runs out after max_hold
    assert p.overruns == 1
    await p.give_way()  # then a free pass: no second wait right away
    assert (p.yields, p.overruns) == (1, 1)


async def test_after_a_wait_that_ran_out_intake_passes_freely_for_its_share_then_waits():
    """The uplink behind for good: intake's free pass after each overrun is max_hold * FREE,
    so it keeps FREE / (1 + FREE) of the loop, no more and no less."""
    now = [0.0]
    p = Priority(max_hold=0.01, monotonic=lambda: now[0])
    p.claim()
    await p.give_way()  # waits max_hold and runs out (the fake clock stands still meanwhile)
    assert (p.yields, p.overruns) == (1, 1)
    now[0] = 0.01 * FREE * 0.9
    await p.give_way()  # inside the free pass: no wait
    assert p.yields == 1
    now[0] = 0.01 * FREE * 1.1
    await p.give_way()  # the pass is over: waits again
    assert (p.yields, p.overruns) == (2, 2)


# -- the imbalance watch --------------------------------------------------------------------


def feed(pressure: Pressure, t0: float, seconds: int, ingest: int, uplink: int, backlog0: int):
    for s in range(seconds + 1):
        pressure.sample(
            t0 + s,
            ingested=ingest * int(t0 + s),
            delivered=uplink * int(t0 + s),
            backlog=backlog0 + (ingest - uplink) * s,
        )


def test_a_sustained_imbalance_is_logged_once_with_its_figures_and_its_end_once(captured_logs, log):
    p = Pressure(max_rows=5_000_000, log=log, window=30, sustain=30)
    # 30k/s read, 9k/s delivered: the backlog grows by 21k rows a second.
    feed(p, 0, 90, 30_000, 9_000, 0)
    warnings = [e for e in captured_logs if e["event"].startswith("back-pressure:")]
    assert len(warnings) == 1
    w = warnings[0]
    assert (w["ingest_per_s"], w["uplink_per_s"], w["growth_per_s"]) == (30_000, 9_000, 21_000)
    assert w["backlog"] == 45 * 21_000  # judged after 15 s, then sustained 30 s
    assert w["full_in_s"] == round((5_000_000 - w["backlog"]) / 21_000)
    assert w["summary"].startswith("ingest 30k/s, uplink 9.0k/s: outbox full in ~")
    snap = p.snapshot()
    assert snap["imbalanced"] is True and snap["episodes"] == 1
    # The uplink catches up: the backlog shrinks; the end is logged once.
    feed(p, 91, 60, 5_000, 9_000, 90 * 21_000)
    ends = [e for e in captured_logs if e["event"].startswith("back-pressure over")]
    assert len(ends) == 1
    assert p.snapshot()["imbalanced"] is False
    assert len([e for e in captured_logs if e["event"].startswith("back-pressure:")]) == 1


def test_an_outage_is_not_back_pressure(captured_logs, log):
    p = Pressure(max_rows=5_000_000, log=log, window=30, sustain=30)
    for s in range(120):  # the link is down: nothing delivered, the backlog grows
        p.sample(s, ingested=1000 * s, delivered=0, backlog=1000 * s, connected=False)
    assert p.episodes == 0 and p.rates() is None
    assert not [e for e in captured_logs if e["event"].startswith("back-pressure")]


def test_a_short_burst_is_not_an_episode(captured_logs, log):
    p = Pressure(max_rows=5_000_000, log=log, window=30, sustain=30)
    feed(p, 0, 20, 30_000, 9_000, 0)  # 20 s only
    feed(p, 21, 60, 9_000, 9_000, 20 * 21_000)  # balanced again
    assert not [e for e in captured_logs if e["event"].startswith("back-pressure")]
    assert p.episodes == 0


def test_status_shows_the_imbalance_in_text_and_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg_path = tmp_path / "gw.toml"
    cfg_path.write_text(
        f'[gateway]\nid = "gw1"\n[store]\npath = "{tmp_path}/o.db"\nruntime_dir = "{run}"\n'
    )
    p = Pressure(max_rows=5_000_000, log=None, window=30, sustain=30)
    p.log = _Quiet()
    feed(p, 0, 60, 30_000, 9_000, 0)
    (run / "status.json").write_text(
        json.dumps(
            {
                "time": time.time(),
                "stopped": None,
                "pid": os.getpid(),
                "clock_synced": True,
                "outbox": {"disk_full": False, "memory_rows": 0},
                "uplink": {"connected": True},
                "devices_down": {},
                "readings_emitted": 1,
                "pressure": p.snapshot(),
            }
        )
    )
    cfg = config.load(cfg_path)
    rep = status_cli.report(cfg, str(cfg_path))
    assert rep["daemon"]["pressure"]["imbalanced"] is True
    assert rep["daemon"]["pressure"]["ingest_per_s"] == 30_000
    lines = [x for x in status_cli.render(rep) if "BACK-PRESSURE" in x]
    assert len(lines) == 1
    assert "ingest 30k/s, uplink 9.0k/s: outbox full in ~" in lines[0]


class _Quiet:
    def warning(self, *a: object, **k: object) -> None: ...

    def info(self, *a: object, **k: object) -> None: ...


# -- a slow uplink under a flood ------------------------------------------------------------


SLOW_UPLINKS = {
    "rate-limited": {"rate_limit": 120_000, "batch_max_readings": 500},
    "latency-bound": {"inflight": 1, "batch_max_readings": 200},  # bench/pressure.py's
}


@pytest.mark.slow
@pytest.mark.parametrize("slow", sorted(SLOW_UPLINKS))
async def test_a_flood_neither_starves_a_slow_uplink_nor_goes_unreported(
    slow, tmp_path, broker, log, captured_logs
):
    """An uplink slower than the source (a real mosquitto; a byte rate limit, or one batch
    in flight): whatever is offered, the uplink's rounds go first (intake gave way), the
    uplink keeps delivering, and the imbalance is reported once in the log and in the
    status snapshot."""
    cfg = replace(BASE, port=broker.port, **SLOW_UPLINKS[slow])
    delivered: dict[int, int] = {}
    async with Outbox.open(tmp_path / "o.db", sync="normal") as ob:
        async with Pipeline(ob, log=log) as pipe, running(make_uplink(cfg, ob, log)) as up:
            pressure = Pressure(max_rows=5_000_000, log=log, window=2.0, sustain=1.0)
            for sources in (1, 4):  # offered load: one flooding bus, then four
                before, yields = up.stats.acked_readings, ob.priority.yields
                floods = [
                    asyncio.create_task(_flood(pipe, f"s{sources}-{k}")) for k in range(sources)
                ]
                try:
                    loop = asyncio.get_running_loop()
                    # Until 5,000 more are delivered, the imbalance is reported and intake
                    # gave way at least once at this load: on a quick machine the 5,000 can
                    # be in before intake met a claimed round (a backlog's batches already
                    # leased), and a flood of 0.1 s says nothing of who goes first.
                    deadline = loop.time() + 60
                    while loop.time() < deadline and (
                        up.stats.acked_readings - before < 5_000
                        or not pressure.reported
                        or ob.priority.yields == yields
                    ):
                        pressure.sample(
                            loop.time(),
                            ingested=pipe.emitted,
                            delivered=up.stats.acked_readings,
                            backlog=ob.rows + ob.memory_rows,
                        )
                        await asyncio.sleep(0.1)
                finally:
                    for f in floods:
                        f.cancel()
                    for f in floods:
                        with contextlib.suppress(asyncio.CancelledError):
                            await f
                delivered[sources] = up.stats.acked_readings - before
                assert ob.priority.yields > yields  # intake gave way to the uplink's rounds
            await wait_until(lambda: up.stats.connected, 5)
    assert min(delivered.values()) >= 5_000
    assert pipe.emitted > up.stats.acked_readings  # more was offered than delivered
    reported = [e for e in captured_logs if e["event"].startswith("back-pressure:")]
    assert len(reported) == 1  # one episode, however long and whatever the load
    assert reported[0]["ingest_per_s"] > reported[0]["uplink_per_s"]
    snap = pressure.snapshot()
    assert snap["imbalanced"] is True and snap["full_in_s"] is not None


async def _flood(pipe: Pipeline, device: str) -> None:
    obs = [Observation(f"q{i}", float(i), "u") for i in range(10)]
    while True:
        await pipe.emit(device, obs)


# -- a latency-bound uplink -----------------------------------------------------------------

LATENCY_BOUND = replace(BASE, **SLOW_UPLINKS["latency-bound"])


async def _until_pubacks_held(up: Uplink, also: Callable[[], object] = lambda: True) -> None:
    """Until the uplink waits on PUBACKs its relay holds: a batch in flight, nothing
    published for 0.1 s (PUBACKs already past the relay still come and release a batch or
    two first), and `also()`."""
    for _ in range(100):
        before = up.stats.published_readings
        await asyncio.sleep(0.1)
        if up.stats.published_readings == before and len(up.window) > 0 and also():
            return
    raise AssertionError(f"never waiting on held PUBACKs: {up.stats}")


async def test_a_latency_bound_uplink_has_its_next_batches_ready_while_one_is_in_flight(
    tmp_path, broker, platform, log
):
    """One batch in flight and a backlog behind it: while its PUBACKs travel (held back here),
    the next batches are leased in one query and encoded already (bounded: AHEAD_ROWS and at
    most half as many again), and wait for the window; when the PUBACKs come the next goes
    at once, with no outbox query or encoding between. Every row arrives, once. (Before, the
    next lease began only after the PUBACKs and the delete; then one batch was prepared per
    round trip, and its query waited behind the appends' transactions.)"""
    async with Relay(broker.port) as relay, Outbox.open(tmp_path / "o.db", sync="normal") as ob:
        await ob.append(readings(ob, 5000))
        cfg = replace(LATENCY_BOUND, port=relay.port)
        up = make_uplink(cfg, ob, log)
        up.pump.order = DrainOrder(pause=0)  # no pause at the drain's end: not what this is about
        batch = cfg.batch_max_readings
        async with running(up):
            await wait_until(lambda: up.stats.acked_readings >= batch)
            relay.hold.clear()  # the broker's PUBACKs stay in the relay
            await _until_pubacks_held(up, lambda: up.pump.ahead and not up.pump.ahead.refilling)
            leased, published = ob.leased(), up.stats.published_readings
            for _ in range(10):
                await asyncio.sleep(0.01)
            assert 0 < up.pump.ahead.rows <= AHEAD_ROWS * 3 // 2  # read ahead, and bounded
            assert ob.leased() == leased  # and no further lease while the window is full
            assert up.stats.published_readings == published  # the batches wait for the window
            in_flight = published - up.stats.acked_readings
            assert in_flight == batch and leased == in_flight + up.pump.ahead.rows
            relay.hold.set()
            await wait_until(lambda: ob.rows == 0 and up.stats.acked_readings == 5000)
        await platform.wait(lambda ms: len(seqs_from_json(platform)) >= 5000)
    seqs = seqs_from_json(platform)
    assert sorted(seqs) == list(range(1, 5001))  # none lost, none twice


async def test_a_distant_broker_does_not_hold_intake_while_the_pubacks_travel(
    tmp_path, broker, platform, log
):
    """A backlog, one batch in flight, and PUBACKs that take longer than PUBACK_HOLD (held
    in the relay here, as a distant broker's would be): the uplink has nothing to do but
    wait, so it gives intake the loop back instead of holding it for the whole round trip
    (before, intake waited up to max_hold per reading: a 20 ms round trip held a 1x offered
    load to ~40 %). When the PUBACKs come, the rest is delivered, every row once."""
    async with Relay(broker.port) as relay, Outbox.open(tmp_path / "o.db", sync="normal") as ob:
        await ob.append(readings(ob, 3000))
        cfg = replace(LATENCY_BOUND, port=relay.port)
        up = make_uplink(cfg, ob, log)
        up.pump.order = DrainOrder(pause=0)
        async with running(up):
            await wait_until(lambda: up.stats.acked_readings >= cfg.batch_max_readings)
            relay.hold.clear()
            await _until_pubacks_held(up)
            assert up.cadence.behind()  # a backlog: the uplink would claim the right of way
            assert not ob.priority.claimed  # but it only waits for the network
            yields = ob.priority.yields
            async with asyncio.timeout(PUBACK_HOLD):
                await ob.priority.give_way()  # intake goes on at once
            assert ob.priority.yields == yields
            relay.hold.set()
            await wait_until(lambda: ob.rows == 0 and up.stats.acked_readings == 3000)
        await platform.wait(lambda ms: len(seqs_from_json(platform)) >= 3000)
    assert sorted(seqs_from_json(platform)) == list(range(1, 3001))


# -- the averaging policy -------------------------------------------------------------------


def _reading(seq: int, device: str, value: object, lane: Lane = Lane.TELEMETRY, **kw) -> Reading:
    return Reading(seq, device, "t", value, "C", 1000.0 + seq, True, lane, **kw)


def test_averaging_starts_over_the_threshold_and_sends_one_mean_per_sensor_and_period(log):
    backlog, counter = [0], [5000]

    def allocate(n: int) -> range:
        counter[0] += n
        return range(counter[0] - n, counter[0])

    avg = Averaging(100, 60.0, backlog=lambda: backlog[0], allocate=allocate, log=log)
    # Under the threshold: every reading passes.
    assert [r.seq for r in avg.take([_reading(1, "a", 1.0)], 0.0)] == [1]
    backlog[0] = 101
    assert avg.take([_reading(2, "a", 2.0)], 1.0) == []  # averaging from now on
    assert avg.active
    alert = _reading(3, "a", "{}", Lane.ALERT)
    assert avg.take([_reading(4, "a", 4.0), alert, _reading(5, "b", True)], 2.0) == [alert]
    out = avg.take([_reading(6, "b", False)], 62.5)  # both periods ended
    by_device = {r.device: r for r in out}
    assert by_device["a"].value == 3.0  # the mean of 2.0 and 4.0
    assert by_device["b"].value is True  # on/off is not averaged: the last one
    assert [r.seq for r in out] == [5000, 5001]  # fresh seqs, in order
    assert by_device["a"].ts == 1004.0  # the last reading's time
    # Back under half the threshold: averaging ends, what was held goes out at once.
    backlog[0] = 40
    out = avg.take([_reading(7, "a", 7.0)], 64.0)
    assert [(r.device, r.value) for r in out] == [("a", 7.0), ("b", False)]
    assert [r.seq for r in out] == [7, 5002]
    assert not avg.active and avg.drain() == []


async def test_the_pipeline_averages_only_what_goes_to_the_outbox_and_loses_nothing_at_stop(
    tmp_path, log
):
    seen: list[Reading] = []
    async with Outbox.open(tmp_path / "o.db", sync="normal") as ob:
        avg = Averaging(100, 3600.0, backlog=lambda: ob.rows, allocate=ob.allocate, log=log)
        async with Pipeline(ob, observers=[seen.extend], averaging=avg, log=log) as pipe:
            for i in range(150):  # fills the outbox past the threshold
                await pipe.emit("a", [Observation("t", float(i), "C")])
            await pipe.flush()
            avg._checked = float("-inf")  # look at the backlog at the next reading
            for i in range(10):
                await pipe.emit("a", [Observation("t", 10.0 + i, "C")])
            assert avg.active
        rows = await ob.peek(limit=1000)
    assert len(seen) == 160  # alert rules see every reading
    assert len(rows) == 151  # 150, then one average of the 10 (sent at the stop)
    assert rows[-1].value == pytest.approx(14.5)
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)


def test_averaging_is_off_by_default_and_its_keys_are_checked():
    base = '[gateway]\nid = "gw1"\n'
    assert config.parse(base).store.average_above == 0
    cfg = config.parse(base + "[store]\naverage_above = 1000000\naverage_seconds = 300\n")
    assert (cfg.store.average_above, cfg.store.average_seconds) == (1_000_000, 300.0)
    for bad, words in (
        ("average_above = 50", "at least 100"),
        ("average_above = 6000000", "below max_rows (5000000)"),
        ("average_above = -1", "store.average_above"),
        ("average_seconds = 0", "store.average_seconds"),
        ('average_seconds = "a minute"', "store.average_seconds"),
    ):
        with pytest.raises(ConfigError) as err:
            config.parse(base + f"[store]\n{bad}\n")
        assert words in str(err.value), (bad, str(err.value))


@pytest.mark.slow  # a process
def test_gateway_check_names_a_bad_average_key_and_exits_78(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        '[gateway]\nid = "gw1"\n[store]\nmax_rows = 1000\naverage_above = 1000\n'
        "average_seconds = 0\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(cfg)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 78
    assert "store.average_above: must be below max_rows (1000), got 1000" in res.stderr
    assert "store.average_seconds" in res.stderr
