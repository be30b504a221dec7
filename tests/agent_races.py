"""Scenarios against the real FIWARE IoT Agent for the two races it has with a gateway, shared
by tests (test_agent_restart, test_agent_order) and a measurement run many times:

- `restart_midstream`: a gateway streams readings, the broker restarts mid-stream; which
  readings reach the context broker (lost: PUBACKed but published before the agent had
  re-subscribed; duplicates: in flight at the restart, sent again).
- `big_drain`: several devices' backlogs of more than one message each drain at once; which
  entities end on an older value than their newest reading (the agent forwards one device's
  consecutive messages concurrently).

`python -m tests.agent_races restart --runs 5 --delays 0,10` and
`python -m tests.agent_races order --runs 10 --devices 4 --groups 1600 --pauses 0,0.5` print
the figures (pause 0: no final hold, the uplink as it was; 0.5: the default).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.clock import iso
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from gateway.uplink.session import Uplink
from tests.agent_setup import fresh_apikey, running_uplink, until, uplink_config
from tests.iotagent import City, run_city

ATTR = [{"object_id": "water_level", "name": "waterLevel", "type": "Number"}]


@dataclass
class Delivery:
    """What reached the context broker of what the gateway sent (keys: (value, time))."""

    sent: int
    delivered: int  # distinct readings that arrived
    lost: int
    duplicates: int  # extra copies of readings that arrived more than once
    inflight: int  # readings published but not PUBACKed when the broker went: may come twice
    holds: int  # resume holds the uplink made
    alerts_sent: int
    alerts_delivered: int


async def _settled(count: Any, quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Until `count()` has not changed for `quiet` seconds (the agent has finished)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last, since = count(), loop.time()
    while loop.time() - since < quiet and loop.time() < deadline:
        await asyncio.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, loop.time()


async def restart_midstream(
    city: City,
    outbox: Outbox,
    log: Any,
    *,
    resume_delay: float | None = None,
    before: float = 1.0,
    outage: float = 0.5,
    after: float = 2.0,
    period: float = 0.02,
) -> tuple[Delivery, Uplink]:
    """Stream one reading every `period` s for `before` s, restart the broker (down for
    `outage` s, still streaming), append an alert at once and stream `after` s more; then wait
    until the outbox is empty and the context broker quiet. `resume_delay` None: the default."""
    apikey = fresh_apikey("r")
    city.agent.provision_group(apikey)
    device, trap = f"{apikey}-paddy", f"{apikey}-trap"
    entity = city.agent.provision_device(device, apikey, attributes=ATTR)
    trap_entity = city.agent.provision_device(trap, apikey)
    changes = {} if resume_delay is None else {"resume_delay": resume_delay}
    cfg = uplink_config(city, apikey, **changes)
    loop = asyncio.get_running_loop()
    sent: list[Reading] = []
    alerts: list[Reading] = []

    async def produce(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            (seq,) = outbox.allocate(1)
            i = len(sent)
            r = Reading(seq, device, "water_level", i * 0.5, "cm", 1.8e9 + 60 * i, True)
            sent.append(r)
            await outbox.append([r])
            await asyncio.sleep(period)

    def alert() -> Reading:
        (seq,) = outbox.allocate(1)
        body = {"id": f"trap-{seq}", "severity": "critical", "description": "Trap 12 caught"}
        r = Reading(seq, trap, "alert", json.dumps(body), "", 1.8e9, True, Lane.ALERT)
        alerts.append(r)
        return r

    async with running_uplink(cfg, outbox, log) as uplink:
        await until(lambda: uplink.stats.connected)
        await produce(before)
        await asyncio.to_thread(city.broker.stop)
        await until(lambda: not uplink.stats.connected)
        inflight = uplink.stats.published_readings - uplink.stats.acked_readings
        await produce(outage)
        await asyncio.to_thread(city.broker.start)
        await outbox.append([alert()])  # in the hold window, when there is one
        await produce(after)
        await until(lambda: outbox.rows == 0 and not uplink.resume.holding, cfg.resume_delay + 60)
        await _settled(
            lambda: len(city.cb.updates_of(entity)) + len(city.cb.updates_of(trap_entity))
        )
    got = collections.Counter(
        (u.value("waterLevel"), u.time_instant()) for u in city.cb.updates_of(entity)
    )
    keys = [(r.value, iso(r.ts)) for r in sent]
    got_alerts = {(u.value("alert") or {}).get("id") for u in city.cb.updates_of(trap_entity)}
    return (
        Delivery(
            sent=len(keys),
            delivered=sum(1 for k in keys if got[k]),
            lost=sum(1 for k in keys if not got[k]),
            duplicates=sum(max(0, got[k] - 1) for k in keys),
            inflight=inflight,
            holds=uplink.stats.resume_holds,
            alerts_sent=len(alerts),
            alerts_delivered=sum(1 for a in alerts if json.loads(str(a.value))["id"] in got_alerts),
        ),
        uplink,
    )


@dataclass
class Ending:
    """How a big drain ended: entities not on their newest value, of how many."""

    entities: int
    stale: int  # entities whose current value is older than the device's newest reading
    messages: int
    final_pauses: int
    drained_s: float  # from the uplink's start until the outbox was empty (held rows too)


async def big_drain(
    city: City,
    outbox: Outbox,
    log: Any,
    *,
    devices: int = 4,
    groups: int = 1600,
    pause: float | None = None,
    **changes: Any,
) -> Ending:
    """`devices` devices each with a backlog of `groups` readings (one per minute, the
    devices interleaved as a real outage leaves them) drain at once with the default batch and
    payload sizes; then each entity's current value is compared with its newest reading.
    `pause` None: the uplink's default order (gateway.uplink.order); 0: no final pause."""
    apikey = fresh_apikey("o")
    city.agent.provision_group(apikey)
    names = [f"{apikey}-d{i}" for i in range(devices)]
    entities = {d: city.agent.provision_device(d, apikey, attributes=ATTR) for d in names}
    cfg = uplink_config(city, apikey, **{"max_payload_bytes": 65536, **changes})
    seqs = iter(outbox.allocate(devices * groups))
    rows = [
        Reading(next(seqs), d, "water_level", float(i), "cm", 1.8e9 + 60 * i, True)
        for i in range(groups)
        for d in names
    ]
    await outbox.append(rows)
    loop = asyncio.get_running_loop()
    async with running_uplink(cfg, outbox, log) as uplink:
        started = loop.time()
        if pause is not None:
            uplink.pump.order.pause = pause
        await until(lambda: outbox.rows == 0, 120)
        drained = loop.time() - started
        await until(
            lambda: all(len(city.cb.updates_of(e)) >= groups for e in entities.values()), 120
        )
    await _settled(lambda: sum(len(city.cb.updates_of(e)) for e in entities.values()), 0.5)
    newest = float(groups - 1)
    return Ending(
        entities=devices,
        stale=sum(1 for e in entities.values() if city.cb.attr(e, "waterLevel") != newest),
        messages=uplink.stats.published_messages,
        final_pauses=uplink.stats.final_pauses,
        drained_s=round(drained, 2),
    )


# -- measurement ---------------------------------------------------------------------------
async def _measure_restart(city: City, runs: int, delays: list[float], work: Path) -> None:
    log = structlog.get_logger()
    for delay in delays:
        total = collections.Counter[str]()
        for n in range(runs):
            async with Outbox.open(work / f"r{delay}-{n}.sqlite", log=log) as outbox:
                d, _ = await restart_midstream(city, outbox, log, resume_delay=delay)
            print(f"resume_delay {delay:g} s run {n}: {d}", flush=True)
            for k in ("sent", "lost", "duplicates", "alerts_sent", "alerts_delivered"):
                total[k] += getattr(d, k)
        print(f"== resume_delay {delay:g} s, {runs} runs: {dict(total)}", flush=True)


async def _measure_order(
    city: City, runs: int, devices: int, groups: int, pauses: list[float], work: Path, batch: int
) -> None:
    log = structlog.get_logger()
    for pause in pauses:
        stale = total = 0
        for n in range(runs):
            async with Outbox.open(work / f"o{pause}-{n}.sqlite", log=log) as outbox:
                end = await big_drain(
                    city,
                    outbox,
                    log,
                    devices=devices,
                    groups=groups,
                    pause=pause,
                    batch_max_readings=batch,
                )
            stale += end.stale
            total += end.entities
            print(f"pause {pause:g} s run {n}: {end}", flush=True)
        print(f"== pause {pause:g} s, {runs} runs: {stale}/{total} entities stale", flush=True)


def _persistent_city(workdir: Path) -> Iterator[City]:
    """run_city with a broker that keeps sessions over a restart (mosquitto persistence)."""
    yield from run_city(workdir, persistence=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.agent_races")
    parser.add_argument("what", choices=("restart", "order"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--persistent", action="store_true", help="a broker with persistence")
    parser.add_argument("--delays", default="0,10", help="restart: resume_delay values, s")
    parser.add_argument("--pauses", default="0,0.5", help="order: final pauses, s")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--groups", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=1000, help="order: batch_max_readings")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gen = (_persistent_city if args.persistent else run_city)(work / "city")
        city = next(gen)
        try:
            if args.what == "restart":
                delays = [float(x) for x in args.delays.split(",")]
                asyncio.run(_measure_restart(city, args.runs, delays, work))
            else:
                pauses = [float(x) for x in args.pauses.split(",")]
                asyncio.run(
                    _measure_order(
                        city, args.runs, args.devices, args.groups, pauses, work, args.batch
                    )
                )
        finally:
            gen.close()


if __name__ == "__main__":
    main()
