"""The driver contract: what a driver package, its options, a bus and a decoder must provide.

A driver is a package `drivers/<family>/` whose `__init__.py` satisfies `Driver` (below):
declarations (TRANSPORTS, PROTOCOLS, HOTPLUG, ACTUATORS, SIMULATORS, SCANNERS, DEMO) and five
entry functions. It imports no transport library at import time (that happens in `create_bus`).
`gateway.registry` finds drivers by these names; there is no central list to edit. Transport
names are `<family>` or `<family>-<variant>` (`modbus-rtu` lives in drivers/modbus).

Config parsing is done once, at the edge: `parse_bus` / `parse_device` return the driver's own
frozen `Options` subclasses with every invariant already checked (problems are recorded on the
Section with their path); a bus takes them as they are and never re-checks them.

This module is part of the core foundation: it imports only gateway.model, gateway.hotplug,
gateway.section, gateway.schema and the standard library, and it must not import any driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from gateway.hotplug import Hotplug
from gateway.model import Observation, Value
from gateway.schema import Schema
from gateway.section import Section


class Log(Protocol):
    """The structlog-style logger a driver gets: events with bound key=value context."""

    def bind(self, **context: Any) -> Log: ...

    def debug(self, event: str, *args: Any, **context: Any) -> Any: ...

    def info(self, event: str, *args: Any, **context: Any) -> Any: ...

    def warning(self, event: str, *args: Any, **context: Any) -> Any: ...

    def error(self, event: str, *args: Any, **context: Any) -> Any: ...

    def exception(self, event: str, *args: Any, **context: Any) -> Any: ...


class Options:
    """Base of a driver's parsed options (frozen dataclasses built by parse_bus/parse_device).

    The core stores them in BusConfig / DeviceConfig and never reads them; the driver gets its
    own class back with `options_as`.
    """

    __slots__ = ()


OptionsT = TypeVar("OptionsT", bound=Options)


def options_as(options: Options | None, kind: type[OptionsT]) -> OptionsT:
    """`options` as the driver's own class `kind`.

    Not a config check (parse_bus / parse_device did those): a mismatch means a BusConfig was
    built by hand for another driver, a bug, so it raises TypeError.
    """
    if not isinstance(options, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(options).__name__}")
    return options


DecoderT = TypeVar("DecoderT")


def decoder_as(device: DeviceConfig, kind: type[DecoderT]) -> DecoderT:
    """`device.decoder` as the driver's own decoder class `kind`.

    Config parsing guarantees a device's profile is of a protocol its transport's driver
    decodes (PROTOCOLS); a mismatch here is a bug (a config built by hand), so TypeError.
    """
    decoder = device.decoder
    if not isinstance(decoder, kind):
        raise TypeError(f"device {device.id}: expected a {kind.__name__}, got {decoder!r}")
    return decoder


class Decoder(Protocol):
    """A pure decoder for one device model (one profile).

    `decode` takes the protocol's native input (bytes, a register dict, a text line, an advert)
    and the device's parameters, and returns observations or raises
    `gateway.errors.DecodeError` (and nothing else, whatever the input). No I/O, no clock, no
    logging. `parse_input` turns the text form used by `gateway decode` and `[[example]]`
    vectors (hex bytes, a register list, a line) into that native input, raising DecodeError.
    The native input is `Any` on purpose: the core only carries it from `parse_input` to
    `decode` of the same decoder and never looks inside.
    `attributes` maps quantity -> payload attribute name (FIWARE short names such as "wl").
    """

    @property
    def protocol(self) -> str: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...

    def parse_input(self, text: str) -> Any: ...

    def decode(self, data: Any, params: Mapping[str, Value]) -> list[Observation]: ...


class Sink(Protocol):
    """Where a bus delivers what it decoded. Implemented by gateway.pipeline."""

    async def emit(
        self, device: str, observations: Sequence[Observation], ts: float | None = None
    ) -> None:
        """Stamp (now, unless `ts` is given), sequence and queue for the outbox.

        Awaits only for back-pressure when the outbox writer is behind. Call once per poll,
        not once per value.
        """
        ...

    def device_state(self, device: str, available: bool, reason: str = "") -> None:
        """Report a device going unavailable or coming back; logged once per transition."""
        ...


@runtime_checkable
class Actuator(Protocol):
    """Something that can switch an output channel (a relay coil driving a siren or a flash)."""

    async def switch(self, channel: int, on: bool) -> None:
        """Set the channel; raises gateway.errors.Transient when the device did not confirm."""
        ...


class Bus(Protocol):
    """One supervised task per physical resource (a serial port, a TCP peer, an adapter)."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None:
        """Poll or listen until cancelled. Transient I/O errors never escape; bugs do."""
        ...


# A command's argument is what the platform sent (decoded JSON or its text); the handler
# answers with a result text ("OK", "error: ..."). A plain handler takes no arguments (the
# router calls it with None); one that takes arguments is a `Command` with a schema.
CommandHandler = Callable[[object], Awaitable[str]]


@dataclass(frozen=True)
class Command:
    """A platform command that takes arguments: its declared `schema` and `run`, which gets
    only the checked arguments (a dict of the schema's fields). The command router checks
    the schema before `run` acts; calling the command itself does the same (check, then run),
    so a Command is a CommandHandler too."""

    schema: Schema
    run: Callable[[dict[str, object]], Awaitable[str]]

    async def __call__(self, args: object) -> str:
        return await self.run(self.schema.check(args))


@dataclass(frozen=True)
class DeviceConfig:
    """A configured device; `options` is the driver's own frozen object from parse_device."""

    id: str
    profile: str
    name: str = ""
    latitude: float | None = None
    longitude: float | None = None
    interval: float = 60.0
    params: Mapping[str, Value] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    options: Options | None = None
    decoder: Decoder | None = None


@dataclass(frozen=True)
class BusConfig:
    """A configured bus; `options` is the driver's own frozen object from parse_bus."""

    name: str
    transport: str
    devices: tuple[DeviceConfig, ...] = ()
    options: Options | None = None


@dataclass
class BusContext:
    """What the daemon hands each bus: where to emit, how to log, where to register things.

    `actuators[device_id]` is filled by buses that can switch outputs (relay modules);
    `commands` takes driver command handlers (name -> async handler returning a result text);
    `hotplug` is the device-event source when one runs (the daemon opens one when a configured
    transport is in some driver's HOTPLUG), None otherwise.
    """

    sink: Sink
    log: Log
    actuators: dict[str, Actuator] = field(default_factory=dict)
    commands: dict[str, CommandHandler] = field(default_factory=dict)
    hotplug: Hotplug | None = None


class Driver(Protocol):
    """What a driver package's `__init__` provides (a module satisfies this protocol).

    Declarations:
      TRANSPORTS  config `transport = "..."` names it serves
      PROTOCOLS   profile `protocol = "..."` names it decodes
      HOTPLUG     transport -> udev subsystems whose add/remove events its buses follow
                  (`{"serial": ("tty",)}`); the daemon opens one hotplug source for them
      ACTUATORS   transports whose buses may register actuators / the `relay` command
      SIMULATORS  `gateway sim NAME ARGS...` -> "module:function" (argv -> exit code)
      SCANNERS    `gateway scan NAME ARGS...` -> "module:function" (argv -> exit code)
      DEMO        "module:function" or None; `async def field(stack: AsyncExitStack,
                  workdir: Path) -> str` starts the family's simulators inside `stack` and
                  returns the TOML of the `[[buses]]` tables `gateway demo` appends
    Hooks are named as "module:function" text so that nothing is imported until used.
    """

    TRANSPORTS: tuple[str, ...]
    PROTOCOLS: tuple[str, ...]
    HOTPLUG: Mapping[str, tuple[str, ...]]
    ACTUATORS: tuple[str, ...]
    SIMULATORS: Mapping[str, str]
    SCANNERS: Mapping[str, str]
    DEMO: str | None

    def parse_bus(self, section: Section, transport: str) -> Options:
        """This transport's bus options from `section` (problems recorded on it)."""
        ...

    def parse_device(self, section: Section, transport: str, decoder: Decoder | None) -> Options:
        """The driver's own device keys (unit id, MAC, ...); `decoder` is the device's
        compiled profile (None when it has none or it failed), for checks that need it."""
        ...

    def compile_profile(self, section: Section, protocol: str) -> Decoder:
        """A pure decoder from a profile file's [profile] + [[point]] tables."""
        ...

    def create_bus(self, bus: BusConfig, ctx: BusContext) -> Bus:
        """The bus task for one physical resource; decoders are in bus.devices[i].decoder."""
        ...

    def reach(self, bus: BusConfig, hotplug: Hotplug | None) -> list[tuple[str, str]]:
        """What would keep `bus` from its resource right now: (bus key at fault, sentence)
        pairs (`("port", "/dev/ttyUSB0 does not exist ...")`, a udev match no device
        answers); empty when nothing is seen or the driver has nothing to look at. For
        `gateway check`, which prints these as warnings, never errors: an adapter may be
        unplugged and the bus waits for it. Only looks (stat, the device list of `hotplug`,
        or sysfs when it is None); opens nothing.
        """
        ...
