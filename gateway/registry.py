"""Finds driver packages by convention: `transport = "modbus-rtu"` -> `drivers.modbus`.

Each package under `drivers/` that declares TRANSPORTS is a driver and must satisfy
gateway.contract.Driver; one that lacks a required name fails at discovery, naming it. A
transport is looked up in the package its name points to first, so a daemon imports only the
drivers of the transports it is configured for (the full scan is for listings and for a
transport named against the convention). This is the only core module that imports drivers
(dynamically, with importlib). Nothing here imports a transport library: driver `__init__`
modules keep those imports lazy.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable, Mapping
from functools import cache
from typing import cast

import drivers
from gateway.contract import Driver

# Every name gateway.contract.Driver requires of a driver package.
REQUIRED = (
    "TRANSPORTS",
    "PROTOCOLS",
    "HOTPLUG",
    "ACTUATORS",
    "SIMULATORS",
    "SCANNERS",
    "DEMO",
    "parse_bus",
    "parse_device",
    "compile_profile",
    "create_bus",
    "reach",
)


@cache
def _load(family: str) -> Driver | None:
    """The driver package `drivers.<family>`, or None when there is no such package or it
    declares no TRANSPORTS (a helper package); raises TypeError when it lacks a name."""
    if not family.isidentifier():
        return None
    spec = importlib.util.find_spec(f"drivers.{family}")
    if spec is None or spec.submodule_search_locations is None:
        return None  # no package of that name (or a plain module)
    module = importlib.import_module(f"drivers.{family}")
    if not hasattr(module, "TRANSPORTS"):
        return None  # a helper package, not a driver
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise TypeError(f"driver {module.__name__} lacks {', '.join(missing)}")
    # The names are there; their types are checked by mypy against Driver in each driver
    # package (its `_contract` assignment).
    return cast(Driver, module)


@cache
def _by_family() -> Mapping[str, Driver]:
    found: dict[str, Driver] = {}
    for info in sorted(pkgutil.iter_modules(drivers.__path__), key=lambda i: i.name):
        if info.ispkg and (driver := _load(info.name)) is not None:
            found[info.name] = driver
    return found


def driver_modules() -> tuple[Driver, ...]:
    """Every driver package, in name order."""
    return tuple(_by_family().values())


def known_transports() -> list[str]:
    return sorted(t for d in driver_modules() for t in d.TRANSPORTS)


def known_protocols() -> list[str]:
    return sorted(p for d in driver_modules() for p in d.PROTOCOLS)


def driver_for_transport(transport: str) -> Driver | None:
    """The driver serving `transport`. The package the convention names (`modbus-rtu` ->
    `drivers.modbus`) is tried first, so a run imports only the drivers its config uses;
    every package is looked at only when the convention does not hold."""
    named = _load(transport.split("-", 1)[0])
    if named is not None and transport in named.TRANSPORTS:
        return named
    return next((d for d in driver_modules() if transport in d.TRANSPORTS), None)


def driver_for_protocol(protocol: str) -> Driver | None:
    return next((d for d in driver_modules() if protocol in d.PROTOCOLS), None)


def driver_named(family: str) -> Driver | None:
    """The driver package `drivers.<family>` (for `gateway sim <family>` and friends)."""
    return _by_family().get(family)


def hotplug_subsystems(transports: Iterable[str]) -> tuple[str, ...]:
    """The udev subsystems buses of these transports follow (sorted; empty: no hotplug)."""
    wanted: set[str] = set()
    for transport in transports:
        driver = driver_for_transport(transport)
        if driver is not None:
            wanted.update(driver.HOTPLUG.get(transport, ()))
    return tuple(sorted(wanted))


def has_actuators(transport: str) -> bool:
    """Whether buses of this transport may register actuators (relay modules)."""
    driver = driver_for_transport(transport)
    return driver is not None and transport in driver.ACTUATORS
