"""The only module that imports pymodbus: one client link per bus, errors mapped to ours.

`Link` wraps a pymodbus 3.16 async client (TCP or RTU serial) with typed reads and writes.
Mapping at this boundary:
  * no answer within timeout x (1 + retries), or a CRC-broken / garbled answer (pymodbus
    drops those frames, so they also end as no answer)    -> NoResponse (DeviceUnavailable)
  * a Modbus exception response                          -> UnitException (DeviceUnavailable)
  * the adapter or TCP peer gone, cannot open or connect  -> BusUnavailable
pymodbus's own reconnect loop is disabled (reconnect_delay=0): gateway.supervise owns
reconnects, so backoff and hotplug wake-ups live in one place. This module does not poll,
schedule or log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.modbus.errors import NoResponse, UnitException
from drivers.modbus.options import BusOptions
from gateway.errors import BusUnavailable

# pymodbus logs an error (with a frame dump) for every unanswered request; a dead slave polled
# every minute would flood the journal. Failures surface as our typed errors and the bus logs
# transitions only, so its own logger stays quiet below CRITICAL.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class Link:
    """An open connection to one bus. Use as `async with Link(options) as link:`."""

    def __init__(self, options: BusOptions) -> None:
        self.options = options
        self._client: Any = None
        self._asked = -1  # unit id of the request on the wire
        self.strays = 0  # answers from a unit we were not asking (a late, slow slave)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # An RTU frame starts with the slave address. Bytes from another unit while we wait
        # are a late answer to an earlier request; pymodbus drops them together with the
        # answer we want when both arrive in one read, so we note it and ask again.
        if sending:
            self._asked = data[0] if data else -1
        elif data and data[0] != self._asked:
            self.strays += 1
        return data

    async def __aenter__(self) -> Link:
        o = self.options
        try:
            if o.transport == "modbus-tcp":
                self._client = AsyncModbusTcpClient(
                    o.host,
                    port=int(o.port),
                    timeout=o.timeout,
                    retries=o.retries,
                    reconnect_delay=0,
                )
            else:
                self._client = AsyncModbusSerialClient(
                    o.port,
                    framer=FramerType.RTU,
                    baudrate=o.baud,
                    parity=o.parity,
                    stopbits=o.stopbits,
                    bytesize=o.bytesize,
                    timeout=o.timeout,
                    retries=o.retries,
                    reconnect_delay=0,
                    trace_packet=self._trace_packet,
                )
            # pymodbus closes a TCP connection after retries+3 unanswered requests; on a
            # shared bus one dead unit must not cut off the others, so we judge that ourselves.
            self._client.set_max_no_responses(1 << 30)
            connected = await self._client.connect()
        except (OSError, ModbusException) as exc:
            self.close()
            raise BusUnavailable(f"{o.where}: cannot open: {exc}") from exc
        if not connected:
            self.close()
            raise BusUnavailable(f"{o.where}: cannot connect")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def _ask(self, unit: int, what: str, method: str, *args: Any, **kw: Any) -> Any:
        if not self.connected:
            raise BusUnavailable(f"{self.options.where}: connection lost")
        strays = self.strays
        try:
            response = await getattr(self._client, method)(*args, device_id=unit, **kw)
        except ModbusIOException:
            if self.strays == strays or not self.connected:
                raise
            # A late answer from another unit masked ours: the line is quiet now, ask once more.
            response = await getattr(self._client, method)(*args, device_id=unit, **kw)
        return self._check(unit, what, response)

    async def _call(self, unit: int, what: str, method: str, *args: Any, **kw: Any) -> Any:
        try:
            return await self._ask(unit, what, method, *args, **kw)
        except ConnectionException as exc:
            raise BusUnavailable(f"{self.options.where}: {exc}") from exc
        except ModbusIOException as exc:
            if not self.connected:
                raise BusUnavailable(f"{self.options.where}: connection lost") from exc
            tries = self.options.retries + 1
            raise NoResponse(
                f"unit {unit}: no valid response to {what} ({tries} x {self.options.timeout:g} s)"
            ) from exc
        except (ModbusException, OSError, asyncio.IncompleteReadError) as exc:
            raise BusUnavailable(f"{self.options.where}: {exc}") from exc

    @staticmethod
    def _check(unit: int, what: str, response: Any) -> Any:
        if response is None:
            raise NoResponse(f"unit {unit}: no response to {what}")
        if response.isError():
            raise UnitException(unit, int(getattr(response, "exception_code", 0)))
        return response

    async def read(self, unit: int, kind: str, address: int, count: int) -> list[int]:
        """Read `count` coils / discrete inputs (as 0/1) or registers from `address`."""
        method = {
            "coil": "read_coils",
            "discrete": "read_discrete_inputs",
            "holding": "read_holding_registers",
            "input": "read_input_registers",
        }[kind]
        what = f"{kind} {address}+{count}"
        response = await self._call(unit, what, method, address, count=count)
        if kind in ("coil", "discrete"):
            values = [1 if b else 0 for b in response.bits[:count]]
        else:
            values = list(response.registers)
        if len(values) != count:
            raise NoResponse(f"unit {unit}: {what}: got {len(values)} values")
        return values

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None:
        """FC05 for one coil, FC15 for several."""
        if len(values) == 1:
            await self._call(unit, f"coil {address}", "write_coil", address, bool(values[0]))
        else:
            what = f"coils {address}+{len(values)}"
            await self._call(unit, what, "write_coils", address, [bool(v) for v in values])

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None:
        """FC06 for one register, FC16 for several."""
        if len(values) == 1:
            await self._call(unit, f"register {address}", "write_register", address, values[0])
        else:
            what = f"registers {address}+{len(values)}"
            await self._call(unit, what, "write_registers", address, list(values))
