"""Applying a reloaded config to a running daemon: stop what changed, start its successor.

`Parts` holds the tasks of the parts a reload may restart (each bus, the uplink, the alert
side) and stops them in the one safe order, used at shutdown too: the alert side first (a
siren that is on gets its off-write through), then the buses, then the uplink after its
in-flight PUBACKs. `apply` restarts only what `gateway.runtime.Changes` names and returns
the next frozen Runtime; the outbox and the pipeline stay open throughout.
Must not: read the config file or decide what changed (the daemon and `Changes` do).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from gateway.clock import Clock
from gateway.config.loader import Config
from gateway.contract import Log
from gateway.runtime import (
    Changes,
    Runtime,
    add_buses,
    forget_devices,
    new_alerting,
    new_uplink,
    register_all,
    retarget,
    retire_uplink,
)


@dataclass
class Parts:
    """The running tasks of the parts a reload may restart."""

    buses: dict[str, asyncio.Task[None]]
    alerting: asyncio.Task[None] | None
    uplink: asyncio.Task[None] | None

    async def stop_alerting(self) -> None:
        if self.alerting is not None:
            self.alerting.cancel()
            await asyncio.wait([self.alerting])
            self.alerting = None

    async def stop_buses(self, names: list[str] | None = None) -> None:
        """The named buses (all when None), cancelled and waited for."""
        stopping = [self.buses.pop(n) for n in (list(self.buses) if names is None else names)]
        for task in stopping:
            task.cancel()
        if stopping:
            await asyncio.wait(stopping)

    async def stop_uplink(self, rt: Runtime, deadline: float) -> None:
        """In-flight publishes get up to `deadline` seconds for their PUBACKs first."""
        if self.uplink is not None:
            await rt.uplink.stop(deadline)
            self.uplink.cancel()
            await asyncio.wait([self.uplink])
            self.uplink = None

    async def stop(self, rt: Runtime, deadline: float) -> None:
        """Everything, for shutdown: alerts, buses, what they queued, then the uplink."""
        await self.stop_alerting()
        await self.stop_buses()
        await rt.pipeline.flush()
        await self.stop_uplink(rt, deadline)


async def apply(
    tg: asyncio.TaskGroup,
    rt: Runtime,
    new: Config,
    changes: Changes,
    parts: Parts,
    *,
    log: Log,
    clock: Clock,
    deadline: float,
) -> Runtime:
    """Stop what changed (alerts first, as at stop), then build and start its successor."""
    if changes.alerts:
        await parts.stop_alerting()
    await parts.stop_buses(list(changes.stop_buses))
    forget_devices(
        rt, {d.id for b in rt.cfg.buses if b.name in changes.stop_buses for d in b.devices}
    )
    if changes.uplink:
        await parts.stop_uplink(rt, deadline)
    started = [b for b in new.buses if b.name in changes.start_buses]
    buses, contexts = add_buses(started, rt.pipeline, log, rt.hub, rt.actuators, rt.commands)
    register_all(rt.router, rt.commands)
    for bus in buses:
        parts.buses[bus.name] = tg.create_task(bus.run(), name=f"bus-{bus.name}")
    uplink, alerting = rt.uplink, rt.alerting
    if changes.uplink:
        retire_uplink(rt)
        rt.router.allowed = frozenset(new.uplink.commands)
        uplink = new_uplink(new, rt.outbox, rt.router, log=log)
        if new.uplink.enabled:
            parts.uplink = tg.create_task(uplink.run(), name="uplink")
    elif changes.devices:
        retarget(uplink, new)
    if changes.alerts:
        alerting = new_alerting(
            new, rt.pipeline, rt.outbox, rt.watched, rt.router, clock=clock, log=log
        )
        if alerting is not None:
            parts.alerting = tg.create_task(alerting.run(), name="alerting")
    kept = {
        b.name: (b, c)
        for b, c in zip(rt.buses, rt.contexts, strict=True)
        if b.name not in changes.stop_buses
    }
    kept.update((b.name, (b, c)) for b, c in zip(buses, contexts, strict=True))
    return replace(
        rt,
        cfg=new,
        uplink=uplink,
        alerting=alerting,
        buses=tuple(kept[b.name][0] for b in new.buses),
        contexts=tuple(kept[b.name][1] for b in new.buses),
    )
