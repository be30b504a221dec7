"""Reload (SIGHUP, the `reload` command) with real buses (synthetic, a Modbus TCP simulator)
and a real broker watching the status topic: a refused file changes nothing, an accepted one
restarts only what changed, and `offline`/`online` is published only when [uplink] changed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.modbus.sim import Simulator, SimUnit
from gateway.config import loader as config_mod
from gateway.config.profiles import ProfileLibrary
from gateway.daemon import Control, Daemon
from gateway.errors import Problem
from gateway.runtime import Changes
from tests.mqtt_peer import Collector
from tests.test_daemon import Proc

STATUS = "gateway/gw1/status"

CONFIG = """
[gateway]
id = "gw1"
trust_clock = true
[uplink]
port = {port}
format = "json"
batch_window = {window}
reconnect_min = 0.1
reconnect_max = 0.5
[store]
path = "{tmp}/outbox.sqlite"
runtime_dir = "{tmp}/run"
[[buses]]
name = "syn"
transport = "synthetic"
[[buses.devices]]
id = "counter"
interval = 0.01
attributes = {{ n = "{n_attr}" }}
points = [ {{ quantity = "n", pattern = "counter" }} ]
[[buses]]
name = "mb"
transport = "modbus-tcp"
host = "127.0.0.1"
port = {sim_port}
timeout = 0.5
[[buses.devices]]
id = "relay-1"
profile = "relay-4ch"
unit = 2
interval = {mb_interval}
[[alerts.rules]]
name = "high"
kind = "threshold"
quantity = "n"
above = 1e12
[alerts.actions.siren]
device = "relay-1"
"""


def _unit() -> SimUnit:
    problems: list[Problem] = []
    profile = ProfileLibrary().get("relay-4ch", problems, "test")
    assert profile is not None, problems
    return SimUnit(profile.decoder, registers={"coil": {0: 0, 1: 0, 2: 0, 3: 0}})


async def _until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(_poll(), timeout)


class Field:
    def __init__(self, tmp: Path, port: int, sim_port: int) -> None:
        self.path = tmp / "gw.toml"
        self.values = {"port": port, "window": 0.2, "tmp": tmp, "sim_port": sim_port, "n_attr": "n"}
        self.write(mb_interval=0.5)

    def write(self, **changes: object) -> None:
        self.values.update(changes)
        self.path.write_text(CONFIG.format(**self.values))


@contextlib.asynccontextmanager
async def running(
    field: Field, settled: list[int] | None = None
) -> AsyncIterator[tuple[Daemon, Control]]:
    control = Control()
    daemon = Daemon(
        config_mod.load(field.path),
        control,
        stop_deadline=1.0,
        settle=lambda: settled.append(daemon.reloads) if settled is not None else None,
    )
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.running(), 10)
        yield daemon, control
    finally:
        control.request_stop()
        await asyncio.wait_for(task, 20)


async def _reload(daemon: Daemon, control: Control) -> None:
    before = daemon.reloads
    control.request_reload()
    await _until(lambda: daemon.reloads > before)


def _payloads(c: Collector) -> list[bytes]:
    return [m.payload for m in c.on(STATUS)]


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_reload_restarts_only_what_changed_and_a_refused_file_changes_nothing(
    tmp_path, broker
):
    platform = Collector(broker.port)
    try:
        async with Simulator({2: _unit()}, "tcp:127.0.0.1:0") as sim:
            field = Field(tmp_path, broker.port, sim.tcp_port)
            settled: list[int] = []  # daemon.reloads at each settle (gateway.collector)
            async with running(field, settled) as (daemon, control):
                await platform.wait(lambda ms: _payloads(platform) == [b"online"])
                assert settled == [0]  # once the parts run
                rt = await daemon.running()
                tasks = daemon.bus_tasks()
                uplink, alerting, outbox = rt.uplink, rt.alerting, rt.outbox
                assert set(tasks) == {"syn", "mb"} and alerting is not None

                # A refused file: nothing restarts, nothing is published on the status topic.
                field.path.write_text("[gateway]\nid = 1\n")
                await _reload(daemon, control)
                assert daemon.bus_tasks() == tasks and not any(t.done() for t in tasks.values())
                rt = await daemon.running()
                assert rt.uplink is uplink and rt.alerting is alerting
                # A [store] change needs a restart: refused as a whole, logged as such.
                field.write(tmp=tmp_path / "elsewhere")
                await _reload(daemon, control)
                assert daemon.bus_tasks() == tasks
                assert not (tmp_path / "elsewhere").exists()
                field.write(tmp=tmp_path)
                assert settled == [0]  # nothing rebuilt, nothing to settle

                # Only the Modbus bus changed: it alone restarts; the uplink stays connected.
                field.write(mb_interval=0.7)
                await _reload(daemon, control)
                after = daemon.bus_tasks()
                assert after["syn"] is tasks["syn"] and not tasks["syn"].done()
                assert after["mb"] is not tasks["mb"] and tasks["mb"].done()
                rt = await daemon.running()
                assert rt.uplink is uplink and rt.alerting is alerting and rt.outbox is outbox
                assert rt.cfg.buses[1].devices[0].interval == 0.7
                assert settled == [0, 2]  # after the reload that rebuilt a bus
                sent = len(platform.messages)
                await platform.wait(lambda ms: len(ms) > sent + 3)  # still publishing
                assert _payloads(platform) == [b"online"]  # no offline/online for a bus change

                # A device's payload names changed: the running uplink's publishing takes
                # them (the FIWARE formats name attributes by them), without a reconnect.
                field.write(n_attr="count")
                await _reload(daemon, control)
                rt = await daemon.running()
                assert rt.uplink is uplink
                assert uplink.pump.target.attributes[("counter", "n")] == "count"
                assert _payloads(platform) == [b"online"]
                renamed = daemon.bus_tasks()
                assert renamed["syn"] is not after["syn"] and renamed["mb"] is after["mb"]
                after = renamed

                # [uplink] changed: the uplink alone restarts (offline, then online again).
                field.write(window=0.3)
                await _reload(daemon, control)
                rt = await daemon.running()
                assert rt.uplink is not uplink and rt.alerting is alerting
                assert daemon.bus_tasks() == after
                await platform.wait(
                    lambda ms: _payloads(platform) == [b"online", b"offline", b"online"]
                )
                assert rt.outbox is outbox
                assert settled == [0, 2, 3, 4]
    finally:
        platform.close()


def test_changes_between_configs(tmp_path):
    field = Field(tmp_path, 1883, 5020)
    old = config_mod.load(field.path)
    assert not Changes.between(old, config_mod.load(field.path))
    field.write(mb_interval=2)
    bus = Changes.between(old, config_mod.load(field.path))
    assert (bus.stop_buses, bus.start_buses, bus.uplink, bus.alerts) == (("mb",), ("mb",), 0, 0)
    field.write(mb_interval=0.5, window=5)
    assert Changes.between(old, config_mod.load(field.path)).uplink
    text = field.path.read_text()
    field.path.write_text(text.replace("above = 1e12", "above = 1e9"))
    changes = Changes.between(old, config_mod.load(field.path))
    assert changes.alerts and not changes.stop_buses and not changes.needs_restart
    field.path.write_text(text.replace('id = "gw1"', 'id = "gw2"'))
    assert Changes.between(old, config_mod.load(field.path)).needs_restart == ("gateway",)


@pytest.mark.slow
def test_sighup_with_a_refused_file_publishes_no_offline(tmp_path, broker):
    # The real process: SIGHUP on a broken file must not bounce the session.
    platform = Collector(broker.port)
    try:
        field = Field(tmp_path, broker.port, 1)  # a Modbus port nobody listens on
        proc = Proc(field.path, tmp_path / "log")
        proc.wait_event("gateway running")
        platform.wait_for(lambda ms: _payloads(platform) == [b"online"])
        field.path.write_bytes(b"\xff\xfe[gateway]\n")
        proc.p.send_signal(signal.SIGHUP)
        proc.wait_event("keeping the running config")
        refused = [e for e in proc.events() if e["event"] == "reload refused: config problem"]
        assert "not UTF-8 text" in refused[0]["problem"]
        field.write(mb_interval=0.9)
        proc.p.send_signal(signal.SIGHUP)
        reloaded = proc.wait_event("config reloaded")
        assert reloaded["restarted"] == ["bus mb"]
        assert proc.stop() == 0
        platform.wait_for(lambda ms: _payloads(platform)[-1:] == [b"offline"])
        assert _payloads(platform) == [b"online", b"offline"]  # offline only at the stop
    finally:
        platform.close()
