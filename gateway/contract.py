"""What a driver package, a bus and a decoder must provide.

A driver is a package `drivers/<family>/` whose `__init__.py` defines, without importing its
transport library at import time (do that inside `create_bus`):

    TRANSPORTS: tuple[str, ...]        # config `transport = "..."` names it serves
    PROTOCOLS: tuple[str, ...]         # profile `protocol = "..."` names it decodes

    def parse_bus(section: Section, transport: str) -> object
        # read this transport's bus options from `section` (frozen object; problems recorded)
    def parse_device(section: Section, transport: str) -> object
        # read the driver's own device keys (unit id, MAC, ...) from `section`
    def compile_profile(section: Section, protocol: str) -> Decoder
        # build a pure decoder from a profile file's [profile] + [[point]] tables
    def create_bus(bus: BusConfig, ctx: BusContext) -> Bus
        # a bus task for one physical resource; decoders are in bus.devices[i].decoder

Optional hooks, also found by name in the package `__init__`:

    SIMULATORS = {"modbus": "drivers.modbus.sim:main"}   # `gateway sim modbus ARGS...`
    SCANNERS = {"modbus": "drivers.modbus.scan:main"}    # `gateway scan modbus ARGS...`
        # each function takes argv (list[str]) and returns an exit code
    DEMO = "drivers.modbus.demo:field"
        # async def field(stack: contextlib.AsyncExitStack, workdir: pathlib.Path) -> str
        # starts the family's simulators inside `stack` and returns TOML text of the
        # `[[buses]]` tables `gateway demo` appends to its config

`gateway.registry` finds drivers by these names; there is no central list to edit.
Transport names are `<family>` or `<family>-<variant>` (`modbus-rtu` lives in drivers/modbus).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gateway.model import Observation, Value


class Decoder(Protocol):
    """A pure decoder for one device model (one profile).

    `decode` takes the protocol's native input (bytes, a register dict, a text line) and the
    device's parameters, and returns observations or raises `gateway.errors.DecodeError` (and
    nothing else, whatever the input). No I/O, no clock, no logging.
    `parse_input` turns the text form used by `gateway decode` and `[[example]]` vectors
    (hex bytes, a register list, a line) into that native input, raising DecodeError.
    `attributes` maps quantity -> payload attribute name (FIWARE short names such as "wl").
    """

    protocol: str
    attributes: Mapping[str, str]

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

    name: str

    async def run(self) -> None:
        """Poll or listen until cancelled. Transient I/O errors never escape; bugs do."""
        ...


CommandHandler = Callable[[Any], Awaitable[str]]


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
    options: Any = None
    decoder: Decoder | None = None


@dataclass(frozen=True)
class BusConfig:
    """A configured bus; `options` is the driver's own frozen object from parse_bus."""

    name: str
    transport: str
    devices: tuple[DeviceConfig, ...] = ()
    options: Any = None


@dataclass
class BusContext:
    """What the daemon hands each bus: where to emit, how to log, where to register things.

    `actuators[device_id]` is filled by buses that can switch outputs (relay modules);
    `commands` takes driver command handlers (name -> async handler returning a result text);
    `hotplug` is the device-event source when one runs (None otherwise).
    """

    sink: Sink
    log: Any
    actuators: dict[str, Actuator] = field(default_factory=dict)
    commands: dict[str, CommandHandler] = field(default_factory=dict)
    hotplug: Any = None
