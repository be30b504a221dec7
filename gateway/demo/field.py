"""`gateway demo`: the gateway's main job on a built-in simulated field, watched live.

Starts a local mosquitto on a free loopback port (or uses `--broker host:port`), builds a
config from the synthetic paddy / buoy / trap devices plus every driver's simulated devices
(the drivers' DEMO hooks start their simulators), runs the daemon in-process, and prints what
reaches the platform as a subscriber sees it. A trap detection switches the simulated siren
relay (each confirmed coil write is printed) and mails farmers and hunters through a local
SMTP sink that prints each mail with its map links. Ctrl-C (or `--seconds`) stops it all cleanly.
Everything stays on 127.0.0.1 and in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway import config as config_mod
from gateway import logs
from gateway.daemon import Control, Daemon
from gateway.demo.broker import LocalBroker
from gateway.demo.mailsink import MailSink
from gateway.registry import driver_modules

SYNTHETIC_FIELD = """
[[buses]]
name = "synthetic"
transport = "synthetic"

[[buses.devices]]
id = "paddy-01"
name = "North paddy"
interval = 3.0
latitude = 36.1150
longitude = 137.9540
attributes = { water_level = "wl", water_temperature = "wt", battery = "bat" }
points = [
  {quantity="water_level",unit="cm",pattern="sine",low=3.0,high=5.5,period=120},
  {quantity="water_temperature",unit="degC",pattern="sine",low=18,high=26,period=300},
  {quantity="battery",unit="V",pattern="constant",low=3.61},
]

[[buses.devices]]
id = "buoy-01"
name = "Harbour buoy"
interval = 4.0
points = [
  {quantity="wind_speed",unit="m/s",pattern="random",low=0.5,high=9.0},
  {quantity="wind_direction",unit="deg",pattern="ramp",low=0,high=359,period=600,decimals=0},
  {quantity="water_temperature",unit="degC",pattern="sine",low=14,high=17,period=600},
]

[[buses.devices]]
id = "trap-01"
name = "Trap 1 (east levee)"
interval = 5.0
latitude = 36.1162
longitude = 137.9561
points = [
  {quantity="trap_state",pattern="cycle",values=["set","set","triggered"]},
  {quantity="battery",unit="V",pattern="constant",low=3.3},
]
"""


def demo_alerts(smtp_port: int, relay: bool) -> str:
    """Alerts for the demo field: a trap detection mails farmers (Japanese) and hunters
    (English) through the local mail sink and, when a relay module is in the field, sounds
    the siren (channel 1) and the flash (channel 2) for a few seconds."""
    actions = (
        """
[alerts.actions.siren]
device = "relay-1"
channel = 1
seconds = 3

[alerts.actions.flash]
device = "relay-1"
channel = 2
seconds = 6
pattern = [0.5, 0.5]
"""
        if relay
        else ""
    )
    return f"""
[alerts.groups.farmers]
to = ["farmers@demo.invalid"]

[alerts.groups.hunters]
to = ["hunters@demo.invalid"]
language = "en"

[alerts.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "gateway@demo.invalid"
retry_min = 1
retry_max = 10
{actions}
[[alerts.rules]]
name = "trap"
kind = "event"
quantity = "trap_state"
equals = "triggered"
severity = "high"
groups = ["farmers", "hunters"]
actions = {'["siren", "flash"]' if relay else "[]"}
cooldown = 60

[[alerts.rules]]
name = "paddy-low"
kind = "threshold"
quantity = "water_level"
below = 3.2
hysteresis = 0.3
hold = 10
severity = "medium"
subcategory = "waterLevelLow"
groups = ["farmers"]
"""


class _Announce:
    """The alert actions' view of the actuators, printing each confirmed relay write (what
    the simulated relay module acknowledged) so the demo shows the siren switching."""

    def __init__(self, inner: Any, out: Any) -> None:
        self.inner, self.out = inner, out

    def get(self, device: str, default: Any = None) -> Any:
        actuator = self.inner.get(device)
        if actuator is None:
            return default
        out = self.out

        class Shown:
            async def switch(self, channel: int, on: bool) -> None:
                await actuator.switch(channel, on)
                state = "ON" if on else "off"
                print(f"relay  -> {device} channel {channel} {state}", file=out, flush=True)

        return Shown()


def demo_config(workdir: Path, host: str, port: int, buses: list[str]) -> str:
    return f"""
[gateway]
id = "demo-field"
name = "Demo field"
latitude = 36.1150
longitude = 137.9540
trust_clock = true

[uplink]
host = "{host}"
port = {port}
apikey = "demo"
format = "fiware-json"
batch_window = 2.0
reconnect_min = 1.0
reconnect_max = 10.0

[store]
path = "{workdir}/outbox.sqlite"
{SYNTHETIC_FIELD}
{"".join(buses)}
"""


async def _watch(host: str, port: int, out: object) -> None:
    """Print every platform-side message, as `mosquitto_sub` receives it."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        print("(mosquitto_sub not found: apt-get install -y mosquitto-clients)", file=out)
        return
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-h",
        host,
        "-p",
        str(port),
        "-t",
        "#",
        "-v",
        "-q",
        "1",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            topic, _, payload = line.decode(errors="replace").rstrip("\n").partition(" ")
            print(f"platform <- {topic}  {payload}", file=out, flush=True)  # type: ignore[call-overload]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


def _announce_relays(daemon: Daemon) -> None:
    if daemon.alerting is not None and daemon.alerting.actions is not None:
        actions = daemon.alerting.actions
        actions.actuators = _Announce(actions.actuators, sys.stdout)  # type: ignore[assignment]


async def run_demo(args: argparse.Namespace, workdir: Path) -> int:
    control = Control()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, control.request_stop)
    async with contextlib.AsyncExitStack() as stack:
        if args.broker:
            host, _, port_text = args.broker.rpartition(":")
            host, port = host or "127.0.0.1", int(port_text)
        else:
            broker = stack.enter_context(LocalBroker(workdir / "broker"))
            host, port = "127.0.0.1", broker.port
        buses = []
        for module in driver_modules():
            hook = getattr(module, "DEMO", None)
            if hook:
                module_name, func = hook.split(":")
                field = getattr(importlib.import_module(module_name), func)
                buses.append(await field(stack, workdir))
        mail = await stack.enter_async_context(MailSink(sys.stdout))
        relay = any('id = "relay-1"' in b for b in buses)
        text = demo_config(workdir, host, port, buses) + demo_alerts(mail.port, relay)
        (workdir / "gateway.toml").write_text(text)
        cfg = config_mod.parse(text, str(workdir / "gateway.toml"))
        print(
            f"demo: broker {host}:{port}, {len(cfg.devices())} devices on "
            f"{len(cfg.buses)} buses, config and outbox in {workdir}",
            flush=True,
        )
        print("demo: Ctrl-C stops everything", flush=True)
        watcher = asyncio.create_task(_watch(host, port, sys.stdout))
        if args.seconds:
            loop.call_later(args.seconds, control.request_stop)
        try:
            await Daemon(cfg, control, extra_setup=_announce_relays).run()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    print("demo: stopped", flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    logs.setup("info", stream=sys.stderr)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gateway-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_demo(args, workdir))
