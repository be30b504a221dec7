"""A small alert config for the tests (synthetic devices with coordinates, two recipient
groups, a siren and a flash on a relay module) and an in-process alert stack around it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from gateway.alerts.renderer import Renderer
from gateway.alerts.wiring import Alerting
from gateway.clock import Clock, SystemClock
from gateway.config import loader as config_mod
from gateway.config.loader import Config
from gateway.contract import Actuator
from gateway.errors import Transient
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.supervise import Backoff
from tests.configs import load_config

TRAP_LAT, TRAP_LON = 36.115012, 137.954321


def config_text(
    smtp_port: int = 2525, store: str = "/tmp/x.sqlite", extra: str = "", smtp: str = ""
) -> str:
    return load_config(
        "alerts",
        smtp_port=smtp_port,
        store=store,
        extra=extra,
        smtp=smtp,
        trap_lat=TRAP_LAT,
        trap_lon=TRAP_LON,
    )


def parse(text: str) -> Config:
    return config_mod.parse(text, "<test>")


@dataclass
class FakeRelay:
    """An Actuator that records every confirmed write; `fail` makes writes unconfirmed."""

    writes: list[tuple[int, bool]] = field(default_factory=list)
    fail: bool = False

    async def switch(self, channel: int, on: bool) -> None:
        if self.fail:
            raise Transient("relay module did not answer")
        self.writes.append((channel, on))

    def state(self, channel: int) -> bool | None:
        last = [on for ch, on in self.writes if ch == channel]
        return last[-1] if last else None


@contextlib.asynccontextmanager
async def stack(
    cfg: Config,
    path: Path,
    actuators: Mapping[str, Actuator],
    *,
    clock: Clock | None = None,
    renderer: Renderer | None = None,
) -> AsyncIterator[tuple[Outbox, Pipeline, Alerting]]:
    """Outbox + pipeline + the alert side (engine, actions, mailer, digest), running;
    `renderer` draws the mail's charts (default: the real child process)."""
    import asyncio

    log = structlog.get_logger().bind(test=True)
    clock = clock or SystemClock(trust=True)
    async with (
        Outbox.open(path, sync="normal") as outbox,
        Pipeline(outbox, clock=clock, flush_interval=0.01) as pipe,
    ):
        alerting = Alerting(
            cfg,
            pipe,
            outbox,
            [dict(actuators)],
            clock=clock,
            log=log,
            mail_backoff=Backoff(0.05, 0.2),
            renderer=renderer,
        )
        task = asyncio.create_task(alerting.run())
        try:
            yield outbox, pipe, alerting
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
