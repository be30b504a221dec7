"""What one run of the daemon is made of, built once from the config and then frozen.

`build_runtime` opens the outbox and the pipeline inside the caller's exit stack (they close in
reverse order when the daemon's run ends), creates the command router with the core's commands,
one bus per `[[buses]]` entry, the alert side when the config has `[alerts]`, and the uplink.
Everything the daemon runs or reports on is then a field of one `Runtime`: none is optional
except `alerting`, which is absent exactly when the config configures no alerts.

A reload (planned by `Changes.between(old, new)`) keeps the outbox, the
pipeline, the router and the tables the buses share, and rebuilds only what changed:
`add_buses`, `new_uplink` and `new_alerting` build the parts, `retire_*` unhook the old ones;
the daemon stops and starts their tasks and freezes the result as the next `Runtime`.

What a config does not use is not imported: the alert side (`gateway.alerts.wiring`, with
its mailer, digest and relay actions) only for a config with `[alerts]`, drivers only through
the registry for the transports configured (tests/test_startup.py checks what a run loads).

Must not: read the config file, start tasks (the daemon runs the parts in its TaskGroup), or
know a driver other than through `gateway.registry`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gateway.clock import Clock
from gateway.config.loader import Config
from gateway.contract import Actuator, Bus, BusConfig, BusContext, CommandHandler
from gateway.errors import Permanent
from gateway.hotplug import Hotplug
from gateway.outbox.averaging import Averaging
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.registry import driver_for_transport
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink
from gateway.uplink.wire import Target

if TYPE_CHECKING:  # imported when a config has [alerts] (new_alerting): start-up stays lean
    from gateway.alerts.wiring import Alerting

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
    actuators: dict[str, Actuator]
    alerting: Alerting | None  # None: the config has no [alerts]
    # The one table the buses register their commands in (chained per name, as drivers do).
    commands: dict[str, CommandHandler]
    # The actuators as the alert side sees them (tells the switch listeners of each write).
    watched: Mapping[str, Actuator]
    hub: Hotplug | None


class StartupError(Permanent):
    """Something a run needs cannot be opened (the store directory cannot be created, a file
    stands where it should be): the daemon says so and exits 78, like a bad config."""


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


def add_buses(
    configs: Iterable[BusConfig],
    sink: Pipeline,
    log: Any,
    hub: Hotplug | None,
    actuators: dict[str, Actuator],
    commands: dict[str, CommandHandler],
) -> tuple[list[Bus], list[BusContext]]:
    """One bus per config entry. Every context shares one actuator table and one command
    table, so relays on two buses are all reachable (a driver chains its handler to the
    one already registered under the same name)."""
    buses: list[Bus] = []
    contexts: list[BusContext] = []
    for bus_cfg in configs:
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
    return buses, contexts


async def _open_store(
    stack: contextlib.AsyncExitStack, cfg: Config, *, clock: Clock, log: Any
) -> tuple[Outbox, Pipeline]:
    """The outbox and the pipeline in front of it; the pipeline closes (flushes) first."""
    store = cfg.store
    try:
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
    except OSError as exc:
        # The directory cannot be created (no permission, a file in its place, read-only).
        where = exc.filename or store.path
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file stands where the directory should be"
        else:
            reason = exc.strerror or str(exc)
        raise StartupError(f"store.path: cannot create or open {where}: {reason}") from None
    averaging = None
    if store.average_above:  # opt-in thinning (gateway.outbox.averaging)
        averaging = Averaging(
            store.average_above,
            store.average_seconds,
            backlog=lambda: outbox.rows + outbox.memory_rows,
            allocate=outbox.allocate,
            log=log.bind(component="pipeline"),
        )
    pipe = await stack.enter_async_context(
        Pipeline(outbox, clock=clock, averaging=averaging, log=log.bind(component="pipeline"))
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
    bus_commands: dict[str, CommandHandler] = {}
    buses, contexts = add_buses(cfg.buses, pipe, log, hub, actuators, bus_commands)
    register_all(router, bus_commands)
    watched = ObservedActuators(actuators, switch_listeners)
    alerting = new_alerting(cfg, pipe, outbox, watched, router, clock=clock, log=log)
    return Runtime(
        cfg=cfg,
        outbox=outbox,
        pipeline=pipe,
        router=router,
        uplink=new_uplink(cfg, outbox, router, log=log),
        buses=tuple(buses),
        contexts=tuple(contexts),
        actuators=actuators,
        alerting=alerting,
        commands=bus_commands,
        watched=watched,
        hub=hub,
    )


def register_all(router: CommandRouter, handlers: Mapping[str, CommandHandler]) -> None:
    for name, handler in handlers.items():
        router.register(name, handler)


def new_alerting(
    cfg: Config,
    pipe: Pipeline,
    outbox: Outbox,
    watched: Mapping[str, Actuator],
    router: CommandRouter,
    *,
    clock: Clock,
    log: Any,
) -> Alerting | None:
    """The alert side for `cfg` (None without [alerts]), hooked to the pipeline, its commands
    registered with `router`."""
    if not cfg.alerts.configured:
        return None
    from gateway.alerts.wiring import Alerting  # only a config with [alerts] loads its side

    alerting = Alerting(cfg, pipe, outbox, watched, clock=clock, log=log)
    register_all(router, alerting.commands)
    return alerting


def new_uplink(cfg: Config, outbox: Outbox, router: CommandRouter, *, log: Any) -> Uplink:
    return Uplink(
        cfg.uplink,
        cfg.site.id,
        outbox,
        router,
        attributes=attribute_map(cfg),
        log=log.bind(component="uplink"),
    )


def retire_uplink(rt: Runtime) -> None:
    """Unhook a stopped uplink from the outbox (its task is the daemon's to cancel)."""
    rt.uplink.detach()


def retarget(uplink: Uplink, cfg: Config) -> None:
    """Payload names follow the new devices without restarting the session."""
    old = uplink.pump.target
    uplink.pump.target = Target(old.apikey, old.gateway_id, old.topic_prefix, attribute_map(cfg))


def forget_devices(rt: Runtime, devices: Iterable[str]) -> None:
    """A stopped bus's relay modules leave the shared table (the alert side no longer
    reaches them; the new bus registers its own), and its devices' availability is
    forgotten (`gateway status` lists no device that is no longer configured)."""
    for device in devices:
        rt.actuators.pop(device, None)
        rt.pipeline.available.pop(device, None)


def _bus_key_cfg(bus: BusConfig) -> object:
    # Compiled decoders compare by identity; the profile's name stands for them.
    return replace(bus, devices=tuple(replace(d, decoder=None) for d in bus.devices))


@dataclass(frozen=True)
class Changes:
    """What a reload from `old` to `new` restarts: the buses whose `[[buses]]` table changed
    (by name: stopped, started), the uplink when `[uplink]` changed, the alert side when
    `[alerts]` or a device's name or place changed. `needs_restart` names `[gateway]` and
    `[store]` when they changed: the daemon refuses such a reload (restart it instead)."""

    needs_restart: tuple[str, ...] = ()
    stop_buses: tuple[str, ...] = ()
    start_buses: tuple[str, ...] = ()
    uplink: bool = False
    alerts: bool = False
    devices: bool = False

    @classmethod
    def between(cls, old: Config, new: Config) -> Changes:
        needs = tuple(
            name
            for name, a, b in (("gateway", old.site, new.site), ("store", old.store, new.store))
            if a != b
        )
        before = {b.name: _bus_key_cfg(b) for b in old.buses}
        after = {b.name: _bus_key_cfg(b) for b in new.buses}
        changed = {n for n in before.keys() & after.keys() if before[n] != after[n]}
        stop = tuple(b.name for b in old.buses if b.name not in after or b.name in changed)
        start = tuple(b.name for b in new.buses if b.name not in before or b.name in changed)
        return cls(
            needs_restart=needs,
            stop_buses=stop,
            start_buses=start,
            uplink=old.uplink != new.uplink,
            alerts=old.alerts != new.alerts or _places(old) != _places(new),
            devices=bool(stop or start),
        )

    def __bool__(self) -> bool:
        return bool(self.needs_restart or self.stop_buses or self.start_buses) or (
            self.uplink or self.alerts
        )


def _places(cfg: Config) -> list[tuple[str, str, float | None, float | None]]:
    return [(d.id, d.name, d.latitude, d.longitude) for d in cfg.devices()]
