"""What the Modbus bus needs of a link to its bus: typed reads and confirmed writes.

drivers.modbus.transport.Link implements it over pymodbus; tests may inject another. Errors:
NoResponse / UnitException (drivers.modbus.errors) for one unit's trouble, BusUnavailable when
the link itself is gone. No I/O and no pymodbus import here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Link(Protocol):
    """An open connection: `async with factory(options) as link:` connects, exit closes."""

    async def __aenter__(self) -> Link: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def read(self, unit: int, kind: str, address: int, count: int) -> list[int]:
        """`count` coils / discrete inputs (as 0/1) or registers from `address`."""
        ...

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None: ...

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None: ...
