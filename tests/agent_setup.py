"""Helpers for tests against the real FIWARE IoT Agent (tests.iotagent): a gateway uplink
configured for the city's broker, readings to feed it, and waiting on the context broker."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.config.loader import UplinkConfig
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink
from tests.iotagent import City
from tests.test_uplink import running

_keys = itertools.count(1)


def fresh_apikey(prefix: str = "k") -> str:
    """An apikey no other test of the module uses (the agent and broker are shared)."""
    return f"{prefix}{next(_keys)}"


def uplink_config(city: City, apikey: str, **changes: Any) -> UplinkConfig:
    base = UplinkConfig(
        host="127.0.0.1",
        port=city.broker.port,
        client_id=f"gw-{apikey}",
        format="fiware-json",
        apikey=apikey,
        status_topic=f"gateway/{apikey}/status",
        batch_window=0.0,
        batch_max_readings=1000,
        reconnect_min=0.05,
        reconnect_max=0.5,
    )
    return replace(base, **changes)


def telemetry(
    outbox: Outbox, device: str, n: int, *, quantity: str = "water_level", t0: float = 1.8e9
) -> list[Reading]:
    """`n` readings of one device, one per minute, values 0.0, 0.5, 1.0, ..."""
    return [
        Reading(seq, device, quantity, i * 0.5, "cm", t0 + 60 * i, True, Lane.TELEMETRY)
        for i, seq in enumerate(outbox.allocate(n))
    ]


@contextlib.asynccontextmanager
async def running_uplink(
    cfg: UplinkConfig,
    outbox: Outbox,
    log: Any,
    *,
    gateway_id: str = "gw1",
    router: CommandRouter | None = None,
    attributes: dict[tuple[str, str], str] | None = None,
) -> AsyncIterator[Uplink]:
    uplink = Uplink(
        cfg,
        gateway_id,
        outbox,
        router or CommandRouter(cfg.commands, log=log),
        attributes=attributes,
        log=log,
    )
    async with running(uplink):
        yield uplink


async def until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll `predicate()` from a coroutine (the context broker is a thread)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def platform_blocks() -> list[dict[str, Any]]:
    """Every ```json block of docs/platform.md (the provisioning the platform team is told
    to do), parsed: tests provision exactly what the page says."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "platform.md").read_text("utf-8")
    return [json.loads(m) for m in re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)]


def as_provisioned(block: dict[str, Any], city: City, apikey: str) -> dict[str, Any]:
    """A docs block pointed at this test's context broker and apikey."""
    text = json.dumps(block).replace("http://orion:1026", f"http://127.0.0.1:{city.cb.port}")
    return json.loads(text.replace('"paddies-gw"', json.dumps(apikey)))
