"""Finds driver packages by convention: `transport = "modbus-rtu"` -> `drivers.modbus`.

Each package under `drivers/` declares the TRANSPORTS and PROTOCOLS it serves (gateway.contract).
Nothing here imports a transport library: driver `__init__` modules keep those imports lazy.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

import drivers


@cache
def driver_modules() -> tuple[ModuleType, ...]:
    """Every importable driver package, in name order."""
    found = []
    for info in sorted(pkgutil.iter_modules(drivers.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"drivers.{info.name}")
        if hasattr(module, "TRANSPORTS"):
            found.append(module)
    return tuple(found)


def known_transports() -> list[str]:
    return sorted(t for m in driver_modules() for t in m.TRANSPORTS)


def known_protocols() -> list[str]:
    return sorted(p for m in driver_modules() for p in getattr(m, "PROTOCOLS", ()))


def driver_for_transport(transport: str) -> ModuleType | None:
    for module in driver_modules():
        if transport in module.TRANSPORTS:
            return module
    return None


def driver_for_protocol(protocol: str) -> ModuleType | None:
    for module in driver_modules():
        if protocol in getattr(module, "PROTOCOLS", ()):
            return module
    return None


def driver_named(family: str) -> ModuleType | None:
    """The driver package `drivers.<family>` (for `gateway sim <family>` and friends)."""
    for module in driver_modules():
        if module.__name__.rsplit(".", 1)[-1] == family:
            return module
    return None
