"""`gateway demo`: the gateway's main job on a built-in simulated field, watched live.

Starts a local mosquitto on a free loopback port (or uses `--broker host:port`), fills in the
packaged config template (`demo.toml`: the synthetic paddy / buoy / trap devices and the alert
rules) with the run's ports and paths and every driver's simulated devices (the drivers' DEMO
hooks start their simulators), runs the daemon in-process, and prints what reaches the
platform as a subscriber sees it. A trap detection switches the simulated siren relay (the
daemon is configured to report each confirmed write, which is printed) and mails farmers and
hunters through a local SMTP sink that prints each mail with its map links (and saves the
HTML of a mail with charts: the daily digest, due one to two minutes after the start). Ctrl-C (or
`--seconds`) stops it all cleanly. Everything stays on 127.0.0.1 and in a temporary directory.
The demo configures the daemon; it never reaches into it.
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
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from gateway import logs
from gateway.config import loader as config_mod
from gateway.daemon import Control, Daemon
from gateway.demo.broker import LocalBroker
from gateway.demo.mailsink import MailSink
from gateway.demo.template import DemoValues, render
from gateway.registry import driver_modules
from gateway.runtime import SwitchListener

DemoField = Callable[[contextlib.AsyncExitStack, Path], Awaitable[str]]


def show_switches(out: TextIO) -> SwitchListener:
    """Print each relay write the simulated relay module confirmed (the siren switching)."""

    def shown(device: str, channel: int, on: bool) -> None:
        state = "ON" if on else "off"
        print(f"relay  -> {device} channel {channel} {state}", file=out, flush=True)

    return shown


async def _watch(host: str, port: int, out: TextIO) -> None:
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
            print(f"platform <- {topic}  {payload}", file=out, flush=True)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def _driver_fields(stack: contextlib.AsyncExitStack, workdir: Path) -> tuple[str, ...]:
    """Start every driver's demo simulators (their `DEMO` hooks) inside `stack`."""
    buses = []
    for module in driver_modules():
        hook = getattr(module, "DEMO", None)
        if hook:
            module_name, func = hook.split(":")
            field: DemoField = getattr(importlib.import_module(module_name), func)
            buses.append(await field(stack, workdir))
    return tuple(buses)


async def _broker(
    stack: contextlib.AsyncExitStack, workdir: Path, given: str | None
) -> tuple[str, int]:
    """`--broker host:port`, or a local mosquitto on a free port for the demo's lifetime."""
    if given:
        host, _, port_text = given.rpartition(":")
        return host or "127.0.0.1", int(port_text)
    broker = stack.enter_context(LocalBroker(workdir / "broker"))
    return "127.0.0.1", broker.port


def _digest_at(minutes: int = 2) -> str:
    """The demo's digest time: the next minute but one, site-local (the demo site's zone):
    due 1 to 2 minutes after the start."""
    local = datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(minutes=minutes)
    return local.strftime("%H:%M")


async def run_demo(args: argparse.Namespace, workdir: Path) -> int:
    control = Control()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, control.request_stop)
    async with contextlib.AsyncExitStack() as stack:
        host, port = await _broker(stack, workdir, args.broker)
        buses = await _driver_fields(stack, workdir)
        mail = await stack.enter_async_context(MailSink(sys.stdout, workdir / "mail"))
        text = render(DemoValues(host, port, workdir, mail.port, buses, _digest_at()))
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
            daemon = Daemon(cfg, control, switch_listeners=[show_switches(sys.stdout)])
            await daemon.run()
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
