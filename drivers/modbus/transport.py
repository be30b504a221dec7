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

from drivers.modbus import BusOptions
from gateway.errors import BusUnavailable, DeviceUnavailable

# pymodbus logs an error (with a frame dump) for every unanswered request; a dead slave polled
# every minute would flood the journal. Failures surface as our typed errors and the bus logs
# transitions only, so its own logger stays quiet below CRITICAL.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# Modbus Application Protocol V1.1b3 section 7: exception codes.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class NoResponse(DeviceUnavailable):
    """The unit did not answer usefully (silence, CRC error, garbled frame)."""


class UnitException(DeviceUnavailable):
    """The unit answered with a Modbus exception code: it is there, but refused."""

    def __init__(self, unit: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(f"unit {unit}: exception {code} ({name})")


class Link:
    """An open connection to one bus. Use as `async with Link(options) as link:`."""

    def __init__(self, options: BusOptions) -> None:
        self.options = options
        self._client: Any = None

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

    async def _call(self, unit: int, what: str, method: str, *args: Any, **kw: Any) -> Any:
        if not self.connected:
            raise BusUnavailable(f"{self.options.where}: connection lost")
        try:
            response = await getattr(self._client, method)(*args, device_id=unit, **kw)
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
