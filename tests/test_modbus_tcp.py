"""The Modbus bus task against the simulator over Modbus TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterable

import pytest
import structlog

from drivers.modbus import create_bus
from drivers.modbus.bus import ModbusBus
from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.sim import Simulator, SimUnit, Write
from gateway.config import loader as config
from gateway.config.profiles import ProfileLibrary
from gateway.contract import BusConfig, BusContext
from gateway.errors import DecodeError, Problem
from gateway.model import Observation
from gateway.schema import ArgumentError
from tests.fakes import RecordingSink

LIBRARY = ProfileLibrary()


def decoder(name: str) -> ModbusDecoder:
    problems: list[Problem] = []
    profile = LIBRARY.get(name, problems, "test")
    assert profile is not None, problems
    return profile.decoder  # type: ignore[return-value]


def bus_config(bus_keys: str, devices: Iterable[str]) -> BusConfig:
    text = '[gateway]\nid = "t"\n[[buses]]\nname = "rs485"\n' + bus_keys + "\n"
    for d in devices:
        text += "[[buses.devices]]\n" + d + "\n"
    return config.parse(text, "test.toml", LIBRARY).buses[0]


def tcp_keys(sim: Simulator, extra: str = "") -> str:
    return (
        f'transport = "modbus-tcp"\nhost = "127.0.0.1"\nport = {sim.tcp_port}\n'
        f"timeout = 0.2\nretries = 1\nreconnect_min = 0.05\nreconnect_max = 0.2\n{extra}"
    )


def device(id: str, profile: str, unit: int, interval: float = 0.1, extra: str = "") -> str:
    return f'id = "{id}"\nprofile = "{profile}"\nunit = {unit}\ninterval = {interval}\n{extra}'


def context(sink: RecordingSink | None = None, **kw: object) -> BusContext:
    return BusContext(sink=sink or RecordingSink(), log=structlog.get_logger(), **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(bus: object) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(bus.run())  # type: ignore[attr-defined]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()  # nothing but the cancellation ended it


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for a condition nobody signals (RecordingSink.device_state does not notify)."""
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.02)


def same(want: Iterable[Observation], have: Iterable[Observation]) -> bool:
    def key(o: Observation) -> tuple[str, str, bool]:
        return (o.quantity, o.unit, o.plausible)

    w, h = sorted(want, key=key), sorted(have, key=key)
    return len(w) == len(h) and all(
        key(a) == key(b)
        and (
            a.value is b.value
            if isinstance(a.value, bool) or isinstance(b.value, bool)
            else math.isclose(a.value, b.value, abs_tol=1e-9)  # type: ignore[arg-type]
        )
        for a, b in zip(w, h, strict=True)
    )


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_every_shipped_profile_example_decodes_through_the_bus() -> None:
    """Serve each example's registers as its own unit; the bus must emit its readings."""
    problems: list[Problem] = []
    cases = []
    for profile in LIBRARY.all(problems):
        if profile.protocol != "modbus":
            continue
        for example in profile.examples:
            if example.readings is not None:
                cases.append((profile, example))
    assert problems == [] and len(cases) >= 20
    units = {
        i + 1: SimUnit(p.decoder, registers=p.decoder.parse_input(e.input))  # type: ignore[arg-type, attr-defined]
        for i, (p, e) in enumerate(cases)
    }
    async with Simulator(units) as sim:
        devices = []
        for i, (p, e) in enumerate(cases):
            params = ", ".join(f"{k} = {v!r}" for k, v in e.params.items())
            devices.append(device(f"d{i + 1}", p.name, i + 1, 0.5, f"params = {{ {params} }}"))
        sink = RecordingSink()
        bus = create_bus(bus_config(tcp_keys(sim), devices), context(sink))
        async with running(bus):
            await sink.wait_for(
                lambda s: {e.device for e in s.emitted} == {f"d{i + 1}" for i in range(len(cases))}
            )
    for i, (p, e) in enumerate(cases):
        got = next(x.observations for x in sink.emitted if x.device == f"d{i + 1}")
        assert same(e.readings, got), (p.name, e.input, got)  # type: ignore[arg-type]
    assert sink.states == []


async def test_live_simulated_values_are_plausible_and_change() -> None:
    now = [0.0]
    units = {12: SimUnit(decoder("urm14"), {"mount_height": 1000.0}, clock=lambda: now[0])}
    async with Simulator(units) as sim:
        sink = RecordingSink()
        cfg = bus_config(
            tcp_keys(sim),
            [device("paddy", "urm14", 12, 0.05, "params = { mount_height = 1000.0 }")],
        )
        async with running(create_bus(cfg, context(sink))):
            await sink.wait_for(lambda s: len(s.emitted) >= 1)
            now[0] = 150.0  # a quarter of the simulator's wave period later
            await sink.wait_for(lambda s: len(set(s.values("paddy", "water_level"))) >= 2)
    levels = sink.values("paddy", "water_level")
    assert all(1.0 <= v <= 9.0 for v in levels)  # type: ignore[operator]
    assert all(o.plausible for e in sink.emitted for o in e.observations)
    # URM14 trigger mode: control register 8 written (0x000C) before the distance is read
    assert Write("holding", 8, (12,)) in units[12].writes
    first_write = sim.requests.index((12, 6))
    assert (12, 3) in sim.requests[first_write:]


@pytest.mark.slow
async def test_dead_garbage_and_refusing_units_do_not_stall_the_others() -> None:
    units = {
        1: SimUnit(decoder("sn3000-anemometer")),
        2: SimUnit(decoder("sn3000-anemometer")),
        3: SimUnit(decoder("sn3000-anemometer")),
        4: SimUnit(decoder("water-temperature")),
    }
    units[2].faults.silent = True
    units[3].faults.garbage = True
    units[4].faults.exception = 4
    async with Simulator(units) as sim:
        sink = RecordingSink()
        cfg = bus_config(
            tcp_keys(sim, "jitter = 0.0"),
            [
                device("good", "sn3000-anemometer", 1, 0.1),
                device("dead", "sn3000-anemometer", 2, 0.1),
                device("noisy", "sn3000-anemometer", 3, 0.1),
                device("refusing", "water-temperature", 4, 0.1),
            ],
        )
        bus = create_bus(cfg, context(sink))
        assert isinstance(bus, ModbusBus)
        # Devices of one profile and plan share one compiled decoder (memory, not speed).
        assert bus.devices["good"].recipe is bus.devices["noisy"].recipe
        assert bus.devices["good"].recipe is not bus.devices["refusing"].recipe
        async with running(bus):
            await sink.wait_for(lambda s: len(s.values("good", "wind_speed")) >= 8, timeout=20)
            assert units[2].requests >= 3 and units[3].requests >= 3  # still tried each cycle
            for unit in units.values():
                unit.faults.silent = unit.faults.garbage = False
                unit.faults.exception = 0
            await until(lambda: len([x for x in sink.states if x[1]]) == 3)
    down = [(d, ok) for d, ok, _ in sink.states if not ok]
    assert sorted(down) == [("dead", False), ("noisy", False), ("refusing", False)]  # once each
    reasons = {d: r for d, ok, r in sink.states if not ok}
    assert "no valid response" in reasons["dead"] and "no valid response" in reasons["noisy"]
    assert reasons["refusing"] == "unit 4: exception 4 (server device failure)"
    assert sorted(d for d, ok, _ in sink.states if ok) == ["dead", "noisy", "refusing"]
    # Budget: per cycle the silent and the garbage unit cost at most timeout x (1 + retries)
    # = 0.4 s each; the good device's polls are never further apart than that plus its own
    # interval and generous slack.
    stamps = [e.ts for e in sink.emitted if e.device == "good"]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]  # type: ignore[operator]
    assert max(gaps) < 0.1 + 2 * 0.4 + 1.0, gaps
    assert bus.counters["NoResponse"] >= 4 and bus.counters["UnitException"] >= 2
    assert bus.counters["device_down"] == 3


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_reconnects_after_the_tcp_peer_goes_away() -> None:
    units = {1: SimUnit(decoder("sn3000-anemometer"))}
    sim = Simulator(units)
    await sim.__aenter__()
    port = sim.tcp_port
    sink = RecordingSink()
    bus = create_bus(
        bus_config(tcp_keys(sim), [device("wind", "sn3000-anemometer", 1, 0.05)]), context(sink)
    )
    try:
        async with running(bus):
            await sink.wait_for(lambda s: len(s.emitted) >= 2)
            await sim.close()
            await until(lambda: ("wind", False) in [(d, ok) for d, ok, _ in sink.states])
            before = len(sink.emitted)
            await asyncio.sleep(0.5)  # several reconnect attempts against a closed port
            assert len(sink.emitted) == before
            sim = Simulator(units, f"tcp:127.0.0.1:{port}")
            await sim.__aenter__()
            await sink.wait_for(lambda s: len(s.emitted) >= before + 2, timeout=10)
    finally:
        await sim.close()
    assert [(d, ok) for d, ok, _ in sink.states] == [("wind", False), ("wind", True)]
    assert "bus down" in sink.states[0][2]
    assert bus.counters["connects"] >= 3  # type: ignore[attr-defined]


async def test_relay_writes_are_serialised_with_polling() -> None:
    relay = SimUnit(decoder("relay-4ch"))
    relay.faults.delay = 0.05  # a slow module: overlapping transactions would show
    units = {1: SimUnit(decoder("sn3000-anemometer")), 2: relay}
    async with Simulator(units) as sim:
        sink = RecordingSink()
        ctx = context(sink)
        cfg = bus_config(
            tcp_keys(sim),
            [device("wind", "sn3000-anemometer", 1, 0.0), device("relay-1", "relay-4ch", 2, 5)],
        )
        bus = create_bus(cfg, ctx)
        async with running(bus):
            await sink.wait_for(lambda s: len(s.emitted) >= 3)
            command = ctx.commands["relay"]
            results = await asyncio.gather(
                command({"device": "relay-1", "channel": 1, "state": True}),
                command('{"device": "relay-1", "channel": 2, "state": true}'),
                ctx.actuators["relay-1"].switch(3, True),
                command({"device": "relay-1", "channel": 2, "state": False}),
            )
            assert results == ["OK", "OK", None, "OK"]
            polls_then = len(sink.values("wind", "wind_speed"))
            # the relay state is read back and emitted after the writes
            await sink.wait_for(lambda s: True in s.values("relay-1", "relay_3"))
            await sink.wait_for(lambda s: len(s.values("wind", "wind_speed")) > polls_then + 5)
    assert [w.address for w in relay.writes] == [0, 1, 2, 1]
    assert [relay.coil(a) for a in range(4)] == [True, False, True, False]
    assert sim.max_inflight == 1
    # writes went out between polls of the other unit, not after all polling stopped
    functions = [f for u, f in sim.requests]
    assert functions.count(5) == 4 and functions[-1] != 5


async def test_relay_command_with_seconds_switches_off_again() -> None:
    relay = SimUnit(decoder("relay-8ch"))
    async with Simulator({5: relay}) as sim:
        ctx = context()
        bus = create_bus(bus_config(tcp_keys(sim), [device("siren", "relay-8ch", 5, 10)]), ctx)
        async with running(bus):
            await asyncio.sleep(0.1)
            result = await ctx.commands["relay"]({"device": "siren", "channel": 8, "seconds": 0.3})
            assert result == "OK" and relay.coil(7)
            for _ in range(100):
                if not relay.coil(7):
                    break
                await asyncio.sleep(0.05)
    assert [w.values for w in relay.writes if w.address == 7] == [(1,), (0,)]


@pytest.mark.slow  # waits out the retry backoff
async def test_a_lost_switch_off_is_retried_until_the_relay_confirms_it() -> None:
    relay = SimUnit(decoder("relay-8ch"))
    async with Simulator({5: relay}) as sim:
        ctx = context()
        bus = create_bus(bus_config(tcp_keys(sim), [device("siren", "relay-8ch", 5, 10)]), ctx)
        async with running(bus):
            await asyncio.sleep(0.1)
            result = await ctx.commands["relay"]({"device": "siren", "channel": 8, "seconds": 0.2})
            assert result == "OK" and relay.coil(7)
            relay.faults.silent = True  # the module misses the switch-off
            await until(lambda: bus.relays.retries >= 1)  # type: ignore[attr-defined]
            assert relay.coil(7)
            relay.faults.silent = False
            await until(lambda: not relay.coil(7), within=10.0)
    assert [w.values for w in relay.writes if w.address == 7] == [(1,), (0,)]


async def test_relay_command_errors_are_specific_and_routed_per_bus() -> None:
    a, b = SimUnit(decoder("relay-4ch")), SimUnit(decoder("relay-4ch"))
    async with Simulator({1: a}) as sim_a, Simulator({1: b}) as sim_b:
        ctx = context()
        bus_a = create_bus(bus_config(tcp_keys(sim_a), [device("r-a", "relay-4ch", 1, 10)]), ctx)
        bus_b = create_bus(bus_config(tcp_keys(sim_b), [device("r-b", "relay-4ch", 1, 10)]), ctx)
        command = ctx.commands["relay"]
        # the buses are not running yet: a write cannot be done
        assert (await command({"device": "r-a", "channel": 1, "state": True})).startswith(
            "error: bus rs485 is down"
        )
        async with running(bus_a), running(bus_b):
            # Both modules answered a poll (a fixed sleep was too short on a loaded machine: a
            # connect that timed out left bus b down for its first backoff).
            sink = ctx.sink
            assert isinstance(sink, RecordingSink)
            await until(lambda: {e.device for e in sink.emitted} >= {"r-a", "r-b"})
            cases = [
                ('{"device": "r-b", "channel": 4, "state": true}', "OK"),
                ("not json", 'expected an object with device, channel, state, seconds, got "not'),
                ("[1, 2]", 'expected an object with device, channel, state, seconds, got "[1, 2]"'),
                (
                    '{"device": "r-x", "channel": 1, "state": true}',
                    '"device" must be a relay module of this gateway, got "r-x"',
                ),
                (
                    '{"device": "r-a", "channel": 5, "state": true}',
                    "error: r-a has no channel 5 (channels: 1, 2, 3, 4)",
                ),
                (
                    '{"device": "r-a", "channel": 1}',
                    'error: "state" (true or false) is required unless "seconds" is given',
                ),
                ('{"device": "r-a", "channel": 1, "state": 1}', '"state" must be true or false'),
                (
                    '{"device": "r-a", "channel": 1, "seconds": -3}',
                    '"seconds" must be in [0, 86400]',
                ),
                (
                    '{"device": "r-a", "channel": 1, "seconds": 1e999}',
                    '"seconds" must be a finite number',
                ),
                ('{"device": "r-a", "channel": 1, "seconds": 0}', '"seconds" must be > 0'),
                ('{"device": "r-a", "chanel": 1, "state": true}', "unknown key(s) chanel"),
            ]
            for text, want in cases:
                # The declared schema refuses before anything is switched (the router turns
                # ArgumentError into an ERROR answer); what the bus refuses comes as text.
                try:
                    got = await command(text)
                except ArgumentError as exc:
                    got = str(exc)
                assert got.startswith(want), (text, got)
    assert b.coil(3) and not any(a.coil(i) for i in range(4))
    assert set(ctx.actuators) == {"r-a", "r-b"}


async def test_write_to_a_dead_relay_fails_and_does_not_stall_the_bus() -> None:
    relay = SimUnit(decoder("relay-4ch"))
    relay.faults.silent = True
    units = {1: SimUnit(decoder("sn3000-anemometer")), 2: relay}
    async with Simulator(units) as sim:
        sink = RecordingSink()
        ctx = context(sink)
        cfg = bus_config(
            tcp_keys(sim),
            [device("wind", "sn3000-anemometer", 1, 0.05), device("relay-1", "relay-4ch", 2, 10)],
        )
        async with running(create_bus(cfg, ctx)):
            await sink.wait_for(lambda s: len(s.emitted) >= 1)
            result = await ctx.commands["relay"]({"device": "relay-1", "channel": 1, "state": True})
            assert result.startswith("error: unit 2: no valid response to coil 0")
            before = len(sink.values("wind", "wind_speed"))
            await sink.wait_for(lambda s: len(s.values("wind", "wind_speed")) > before + 2)


def test_a_non_modbus_profile_is_a_config_error() -> None:
    """Config parsing guarantees a Modbus bus only gets Modbus decoders (the bus trusts it)."""
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        keys = 'transport = "modbus-tcp"\nhost = "127.0.0.1"'
        bus_config(keys, [device("x", "trap-receiver", 1)])
    assert [(p.path, p.message) for p in caught.value.problems] == [
        (
            "buses[0].devices[0].profile",
            '"trap-receiver" is a line profile; transport "modbus-tcp" decodes modbus',
        )
    ]


async def test_a_wake_event_cuts_the_reconnect_backoff_short() -> None:
    units = {1: SimUnit(decoder("sn3000-anemometer"))}
    probe = Simulator(units)
    await probe.__aenter__()
    port = probe.tcp_port
    await probe.close()  # nobody listens on `port` now
    sink = RecordingSink()
    keys = (
        tcp_keys(probe)
        .replace("reconnect_min = 0.05", "reconnect_min = 30.0")
        .replace("reconnect_max = 0.2", "reconnect_max = 60.0")
    )
    wake = asyncio.Event()
    bus = ModbusBus(
        bus_config(keys, [device("wind", "sn3000-anemometer", 1, 0.05)]), context(sink), wake=wake
    )
    async with running(bus):
        await until(lambda: bus.counters["connects"] >= 1)
        await asyncio.sleep(0.1)  # the first attempt failed; the bus now waits >= 24 s
        async with Simulator(units, f"tcp:127.0.0.1:{port}"):
            wake.set()  # e.g. udev saw the adapter come back
            await sink.wait_for(lambda s: len(s.emitted) >= 1, 5)
    assert bus.counters["connects"] == 2


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_shipped_error_examples_take_their_device_down_with_the_decoders_words() -> None:
    """An answer the compiled decoder does not take (drivers.modbus.recipe) reaches the plain
    decoder, so the reason is word for word what `gateway decode` says for those registers."""
    from drivers.modbus.plan import plan

    cases = []
    for profile in LIBRARY.all([]):
        if profile.protocol != "modbus":
            continue
        for example in profile.examples:
            if example.error is None:
                continue
            dec: ModbusDecoder = profile.decoder  # type: ignore[assignment]
            try:
                table = dec.parse_input(example.input)
            except DecodeError:
                continue  # input a device cannot send (a coil holding 2)
            blocks = plan(dec.spans())
            if all(a in table.get(b.kind, {}) for b in blocks for a in range(b.address, b.end)):
                try:
                    dec.decode(table, example.params)
                except DecodeError as exc:
                    cases.append((profile.name, table, example.params, f"cannot decode: {exc}"))
    assert {name for name, *_ in cases} >= {"pressure-level", "urm14"}
    units = {
        i + 1: SimUnit(decoder(name), registers=table) for i, (name, table, *_) in enumerate(cases)
    }  # type: ignore[arg-type]
    async with Simulator(units) as sim:
        devices = []
        for i, (name, _, params, _) in enumerate(cases):
            keys = ", ".join(f"{k} = {v!r}" for k, v in params.items())
            devices.append(device(f"d{i + 1}", name, i + 1, 0.5, f"params = {{ {keys} }}"))
        sink = RecordingSink()
        async with running(create_bus(bus_config(tcp_keys(sim), devices), context(sink))):
            await until(lambda: len(sink.states) >= len(cases))
    assert sorted(sink.states) == sorted(
        (f"d{i + 1}", False, reason) for i, (*_, reason) in enumerate(cases)
    )
    assert sink.emitted == []
