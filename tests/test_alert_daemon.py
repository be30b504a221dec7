"""The alert side inside the running daemon, with the uplink down: a trap event switches the
siren relay on the Modbus simulator (which records coil writes) and off after the duration,
the relay left on by a previous run goes to rest at start, the e-mail reaches a real SMTP
server, the platform event waits in the ALERT lane; `siren` and `alert-test` commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys

import pytest

from drivers.modbus.sim import Simulator, SimUnit
from gateway.config import loader as config_mod
from gateway.config.profiles import ProfileLibrary
from gateway.daemon import Control, Daemon
from gateway.errors import Problem
from gateway.model import Lane
from tests.configs import load_config
from tests.smtp_peer import MailSink


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay_unit() -> SimUnit:
    problems: list[Problem] = []
    profile = ProfileLibrary().get("relay-4ch", problems, "test")
    assert profile is not None, problems
    # Coil 1 (the siren) was left on by a run that died mid-siren.
    return SimUnit(profile.decoder, registers={"coil": {0: 1, 1: 0, 2: 0, 3: 0}})


def _config(tmp_path, sim: Simulator, smtp_port: int, trap_values: list[str]) -> str:
    return load_config(
        "alert_daemon",
        uplink_port=_closed_port(),
        tmp=tmp_path,
        sim_host=sim.host,
        sim_port=sim.tcp_port,
        smtp_port=smtp_port,
        trap_values=json.dumps(trap_values),
    )


def _coil0(unit: SimUnit) -> list[int]:
    return [w.values[0] for w in unit.writes if w.kind == "coil" and w.address == 0]


async def _until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(_poll(), timeout)


@contextlib.asynccontextmanager
async def _daemon(text: str):  # type: ignore[no-untyped-def]
    cfg = config_mod.parse(text, "<test>")
    control = Control()
    daemon = Daemon(cfg, control, stop_deadline=1.0)
    task = asyncio.create_task(daemon.run())
    try:
        rt = await asyncio.wait_for(daemon.running(), 10)
        assert rt.alerting is not None  # the config has [alerts]
        yield rt
    finally:
        control.request_stop()
        await asyncio.wait_for(task, 20)


@pytest.mark.slow
async def test_trap_switches_the_siren_on_the_simulator_with_the_uplink_down(tmp_path):
    unit = _relay_unit()
    mail = await MailSink().start()
    try:
        async with Simulator({2: unit}, "tcp:127.0.0.1:0") as sim:
            text = _config(tmp_path, sim, mail.port, ["set"] * 30 + ["triggered"] + ["set"] * 400)
            async with _daemon(text) as rt:
                # Rest state first (coil 1 was on), then on for the trap, then off again.
                await _until(lambda: _coil0(unit)[:3] == [0, 1, 0], timeout=20)
                assert not unit.coil(0)
                (got,) = await mail.wait_for(1)
                assert "https://maps.gsi.go.jp/#16/36.123400/137.567800/" in (
                    got.message.get_content().splitlines()
                )
                assert not rt.uplink.stats.connected
                events = await rt.outbox.peek(Lane.ALERT)
                sdms = [json.loads(str(e.value)) for e in events]
                assert {(e.device, e.quantity) for e in events} == {("trap-01", "alert")}
                # The alert, then its clear when the trap is set again (reported once).
                assert [s["status"] for s in sdms] == ["active", "cleared"]
                sdm = sdms[0]
                assert sdm["type"] == "Alert" and sdm["subCategory"] == "animalTrapped"
                assert sdm["location"] == {"type": "Point", "coordinates": [137.5678, 36.1234]}

                # The platform's commands, through the allow-list.
                router = rt.router
                writes = len(_coil0(unit))
                reply = await router.handle(b'{"siren": {"seconds": 0.3}}')
                assert reply == {"siren": "OK"}
                await _until(lambda: _coil0(unit)[writes:] == [1, 0])
                reply = await router.handle(b'{"siren": {"seconds": "loud"}}')
                assert reply["siren"].startswith("ERROR")
                reply = await router.handle(b'{"alert-test": "trap"}')
                assert reply["alert-test"].startswith("OK trap:trap-01:")
                reply = await router.handle(b'{"alert-test": "nope"}')
                assert "unknown rule" in reply["alert-test"]
                received = await mail.wait_for(2)
                assert "【テスト】" in received[1].message["Subject"]
    finally:
        await mail.stop()


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_alert_reaches_the_platform_ahead_of_telemetry_and_siren_command_on_mqtt(
    tmp_path, broker, platform
):
    unit = _relay_unit()
    mail = await MailSink().start()
    try:
        async with Simulator({2: unit}, "tcp:127.0.0.1:0") as sim:
            text = _config(tmp_path, sim, mail.port, ["set"] * 3 + ["triggered"] + ["set"] * 400)
            text = text.replace(
                "reconnect_min = 0.2", 'reconnect_min = 0.2\napikey = "k"\nbatch_window = 600'
            )
            text = text.replace(
                f"port = {text.split('[uplink]')[1].split('port = ')[1].split()[0]}",
                f"port = {broker.port}",
                1,
            )
            async with _daemon(text):
                topic = "/json/k/trap-01/attrs"
                await platform.wait(lambda ms: any(m.topic == topic for m in ms))
                (msg,) = platform.on(topic)[:1]
                body = json.loads(msg.payload)
                assert body["alert"]["type"] == "Alert"
                assert body["alert"]["alertSource"] == "trap-01"
                assert body["alert"]["severity"] == "high"
                assert "trap_state" not in body  # telemetry is still batching (600 s window)
                # The trap's siren is over (on, then off) before the command.
                await _until(lambda: 1 in _coil0(unit) and _coil0(unit)[-1] == 0)
                writes = len(_coil0(unit))
                platform.publish("/k/alert-field/cmd", b'{"siren": {"seconds": 0.2}}')
                reply_topic = "/json/k/alert-field/cmdexe"
                await platform.wait(lambda ms: any(m.topic == reply_topic for m in ms))
                assert json.loads(platform.on(reply_topic)[0].payload) == {"siren": "OK"}
                await _until(lambda: _coil0(unit)[writes:] == [1, 0])
    finally:
        await mail.stop()


@pytest.mark.slow
async def test_sigkill_during_a_siren_then_restart_switches_the_relay_off(tmp_path):
    unit = SimUnit(_relay_unit().decoder, registers={"coil": {0: 0, 1: 0, 2: 0, 3: 0}})
    mail = await MailSink().start()
    try:
        async with Simulator({2: unit}, "tcp:127.0.0.1:0") as sim:
            first = _config(tmp_path, sim, mail.port, ["set"] * 20 + ["triggered"] + ["set"] * 999)
            first = first.replace("seconds = 0.5", "seconds = 600")
            path = tmp_path / "gateway.toml"
            path.write_text(first)
            cmd = [sys.executable, "-m", "gateway", "run", "-c", str(path)]
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            try:
                await _until(lambda: unit.coil(0), timeout=30)  # the siren is sounding
            finally:
                proc.kill()  # a power cut, as far as the relay is concerned
                await proc.wait()
            assert unit.coil(0)  # nobody switched it off
            path.write_text(_config(tmp_path, sim, mail.port, ["set"]))
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            try:
                await _until(lambda: not unit.coil(0), timeout=30)
            finally:
                proc.terminate()
                await proc.wait()
            assert _coil0(unit)[-2:] == [1, 0]
    finally:
        await mail.stop()
