"""What one run of the daemon is made of, built once from the config and then frozen.

`build_runtime` opens the outbox and the pipeline inside the caller's exit stack (they close in
reverse order when the daemon's run ends), creates the command router with the core's commands,
one bus per `[[buses]]` entry, the alert side when the config has `[alerts]`, and the uplink.
Everything the daemon runs or reports on is then a field of one `Runtime`: none is optional
except `alerting`, which is absent exactly when the config configures no alerts.

Must not: read the config file, start tasks (the daemon runs the parts in its TaskGroup), or
know a driver other than through `gateway.registry`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.alerts.wiring import Alerting
from gateway.clock import Clock
from gateway.config.loader import Config
from gateway.contract import Actuator, Bus, BusContext, CommandHandler
from gateway.hotplug import Hotplug
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.registry import driver_for_transport
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink

SwitchListener = Callable[[str, int, bool], None]
"""Told of every relay write a device confirmed: (device id, channel, on)."""


@dataclass(frozen=True)
class Runtime:
    """The running parts of one config. The daemon owns their tasks and their order."""

    cfg: Config
    outbox: Outbox
    pipeline: Pipeline
    router: CommandRouter
    uplink: Uplink
    buses: tuple[Bus, ...]
    contexts: tuple[BusContext, ...]
    # The one table every bus registers its relay modules in (device id -> actuator).
    actuators: Mapping[str, Actuator]
    alerting: Alerting | None  # None: the config has no [alerts]


def attribute_map(cfg: Config) -> dict[tuple[str, str], str]:
    """(device, quantity) -> payload attribute: device overrides, then profile names."""
    names: dict[tuple[str, str], str] = {}
    for device in cfg.devices():
        if device.decoder is not None:
            for quantity, attr in device.decoder.attributes.items():
                names[(device.id, quantity)] = attr
        for quantity, attr in device.attributes.items():
            names[(device.id, quantity)] = attr
    return names


class _ObservedActuator:
    def __init__(self, device: str, inner: Actuator, listeners: Sequence[SwitchListener]) -> None:
        self.device, self.inner, self.listeners = device, inner, listeners

    async def switch(self, channel: int, on: bool) -> None:
        await self.inner.switch(channel, on)  # raises when the device did not confirm
        for listener in self.listeners:
            listener(self.device, channel, on)


class ObservedActuators(Mapping[str, Actuator]):
    """A live view of the actuator table that tells `listeners` of each confirmed write.

    Live: buses register their relays after the runtime is built (when they connect)."""

    def __init__(self, table: Mapping[str, Actuator], listeners: Sequence[SwitchListener]) -> None:
        self._table = table
        self._listeners = tuple(listeners)

    def __getitem__(self, device: str) -> Actuator:
        return _ObservedActuator(device, self._table[device], self._listeners)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


def _create_buses(
    cfg: Config,
    sink: Pipeline,
    log: Any,
    hub: Hotplug | None,
    actuators: dict[str, Actuator],
) -> tuple[list[Bus], list[BusContext], dict[str, CommandHandler]]:
    """One bus per config entry. Every context shares one actuator table and one command
    table, so relays on two buses are all reachable (a driver chains its handler to the
    one already registered under the same name)."""
    buses: list[Bus] = []
    contexts: list[BusContext] = []
    commands: dict[str, CommandHandler] = {}
    for bus_cfg in cfg.buses:
        driver = driver_for_transport(bus_cfg.transport)
        assert driver is not None  # config validation guarantees it
        ctx = BusContext(
            sink=sink,
            log=log.bind(bus=bus_cfg.name),
            actuators=actuators,
            commands=commands,
            hotplug=hub,
        )
        contexts.append(ctx)
        buses.append(driver.create_bus(bus_cfg, ctx))
    return buses, contexts, commands


async def _open_store(
    stack: contextlib.AsyncExitStack, cfg: Config, *, clock: Clock, log: Any
) -> tuple[Outbox, Pipeline]:
    """The outbox and the pipeline in front of it; the pipeline closes (flushes) first."""
    store = cfg.store
    outbox = await stack.enter_async_context(
        Outbox.open(
            store.path,
            sync=store.sync,
            max_rows=store.max_rows,
            max_bytes=store.max_bytes,
            drop_policy=store.drop_policy,
            memory_rows=store.memory_rows,
            log=log.bind(component="outbox"),
        )
    )
    pipe = await stack.enter_async_context(
        Pipeline(outbox, clock=clock, log=log.bind(component="pipeline"))
    )
    return outbox, pipe


async def build_runtime(
    stack: contextlib.AsyncExitStack,
    cfg: Config,
    *,
    clock: Clock,
    log: Any,
    hub: Hotplug | None,
    commands: Mapping[str, CommandHandler],
    switch_listeners: Sequence[SwitchListener] = (),
) -> Runtime:
    """Open and wire everything `cfg` asks for; what is opened closes with `stack`.

    `commands` are the core's own (ping, reload); drivers' and the alert side's follow, in
    that order. `switch_listeners` see the alert actions' confirmed relay writes."""
    outbox, pipe = await _open_store(stack, cfg, clock=clock, log=log)
    router = CommandRouter(
        cfg.uplink.commands,
        commands,
        log=log.bind(component="commands"),
        max_bytes=cfg.uplink.command_max_bytes,
    )
    actuators: dict[str, Actuator] = {}
    buses, contexts, bus_commands = _create_buses(cfg, pipe, log, hub, actuators)
    for name, handler in bus_commands.items():
        router.register(name, handler)
    alerting = None
    if cfg.alerts.configured:
        watched = ObservedActuators(actuators, switch_listeners)
        alerting = Alerting(cfg, pipe, outbox, watched, clock=clock, log=log)
        for name, handler in alerting.commands.items():
            router.register(name, handler)
    uplink = Uplink(
        cfg.uplink,
        cfg.site.id,
        outbox,
        router,
        attributes=attribute_map(cfg),
        log=log.bind(component="uplink"),
    )
    return Runtime(
        cfg=cfg,
        outbox=outbox,
        pipeline=pipe,
        router=router,
        uplink=uplink,
        buses=tuple(buses),
        contexts=tuple(contexts),
        actuators=actuators,
        alerting=alerting,
    )
