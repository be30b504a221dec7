"""One link per bus over pymodbus's wire format: typed reads and writes, errors mapped to ours.

`Link` opens a Modbus TCP connection or an RTU serial port (through drivers.modbus.channel,
the only other module that imports pymodbus), builds each request with pymodbus's request PDU
classes, and asks up to 1 + retries times. Mapping at this boundary:
  * no answer within timeout x (1 + retries), or a CRC-broken / garbled answer (dropped, so
    it also ends as no answer)                           -> NoResponse (DeviceUnavailable)
  * a Modbus exception response                          -> UnitException (DeviceUnavailable)
  * the adapter or TCP peer gone, cannot open or connect  -> BusUnavailable
There is no reconnect loop here: gateway.supervise owns reconnects, so backoff and hotplug
wake-ups live in one place. One request is on the wire at a time. This module does not poll,
schedule or log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    WriteSingleCoilRequest,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from drivers.modbus.channel import Channel
from drivers.modbus.errors import NoResponse, UnitException
from drivers.modbus.options import BusOptions
from gateway.errors import BusUnavailable

# Our path does not go through pymodbus's logging; its serial transport and framers may still
# log a garbled frame, and the bus reports failures itself (transitions only).
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# kind -> the read request class and the class its answer decodes with
_READS: dict[str, tuple[type[ModbusPDU], type[ModbusPDU]]] = {
    "coil": (ReadCoilsRequest, ReadCoilsResponse),
    "discrete": (ReadDiscreteInputsRequest, ReadDiscreteInputsResponse),
    "holding": (ReadHoldingRegistersRequest, ReadHoldingRegistersResponse),
    "input": (ReadInputRegistersRequest, ReadInputRegistersResponse),
}


def _pdu(request: ModbusPDU) -> bytes:
    """Function code and data, as pymodbus's request class encodes them (it checks ranges)."""
    return request.function_code.to_bytes(1, "big") + request.encode()


class Link:
    """An open connection to one bus. Use as `async with Link(options) as link:`."""

    def __init__(self, options: BusOptions) -> None:
        self.options = options
        self._channel: Channel | None = None
        self._lock = asyncio.Lock()  # one request on the wire, whoever asks
        # A poll's requests, built once: (kind, address, count) -> (request PDU, reply class)
        self._reads: dict[tuple[str, int, int], tuple[bytes, type[ModbusPDU]]] = {}

    @property
    def strays(self) -> int:
        """Answers from a unit we were not asking (a late, slow slave), since connecting."""
        return self._channel.strays if self._channel is not None else 0

    async def __aenter__(self) -> Link:
        o = self.options
        loop = asyncio.get_running_loop()
        channel = Channel(rtu=o.transport != "modbus-tcp")
        self._channel = channel
        try:
            if o.transport == "modbus-tcp":
                async with asyncio.timeout(o.timeout):
                    await loop.create_connection(lambda: channel, o.host, int(o.port))
            else:
                # pyserial behind pymodbus's asyncio serial transport; imported here so a
                # TCP-only gateway does not load pyserial.
                from pymodbus.transport.serialtransport import create_serial_connection

                await create_serial_connection(
                    loop,
                    lambda: channel,
                    o.port,
                    baudrate=o.baud,
                    bytesize=o.bytesize,
                    parity=o.parity,
                    stopbits=o.stopbits,
                    timeout=o.timeout,
                )
            async with asyncio.timeout(o.timeout):
                await channel.opened()
        except (OSError, TimeoutError, ModbusException, ValueError) as exc:
            # serial.SerialException is an OSError; a bad baud rate or path is a ValueError.
            self.close()
            reason = str(exc) or type(exc).__name__
            raise BusUnavailable(f"{o.where}: cannot connect: {reason}") from exc
        except BaseException:
            self.close()  # cancelled while opening: an exclusive serial port must not stay held
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    @property
    def connected(self) -> bool:
        return self._channel is not None and self._channel.connected

    async def _ask(self, unit: int, request: bytes, reply: type[ModbusPDU]) -> ModbusPDU | None:
        channel = self._channel
        if channel is None or not channel.connected:
            raise BusUnavailable(f"{self.options.where}: connection lost")
        o = self.options
        # acquire()/release() rather than `async with`: two coroutines less per request.
        await self._lock.acquire()
        try:
            strays = channel.strays
            for _ in range(o.retries + 1):
                if (response := await channel.ask(unit, request, reply, o.timeout)) is not None:
                    return response
            if channel.strays != strays:
                # Another unit's late answer held the line while we waited: it is quiet
                # now, ask once more.
                return await channel.ask(unit, request, reply, o.timeout)
        except ConnectionError as exc:
            raise BusUnavailable(f"{o.where}: {exc}") from exc
        finally:
            self._lock.release()
        return None

    def _answer(self, unit: int, response: ModbusPDU | None, what: str) -> ModbusPDU:
        """The response, or the error that stands for its absence or a refusal."""
        if response is None:
            o = self.options
            raise NoResponse(
                f"unit {unit}: no valid response to {what} ({o.retries + 1} x {o.timeout:g} s)"
            )
        if isinstance(response, ExceptionResponse):
            raise UnitException(unit, response.exception_code)
        return response

    async def _call(
        self, unit: int, request: bytes, reply: type[ModbusPDU], what: str
    ) -> ModbusPDU:
        return self._answer(unit, await self._ask(unit, request, reply), what)

    async def read(self, unit: int, kind: str, address: int, count: int) -> list[int]:
        """Read `count` coils / discrete inputs (as 0/1) or registers from `address`."""
        key = (kind, address, count)
        if (prepared := self._reads.get(key)) is None:
            request_class, reply = _READS[kind]
            prepared = (_pdu(request_class(address=address, count=count)), reply)
            self._reads[key] = prepared
        response = await self._ask(unit, *prepared)
        if response is None or isinstance(response, ExceptionResponse):
            # raises: the read is named (formatted) only then
            response = self._answer(unit, response, f"{kind} {address}+{count}")
        if kind in ("coil", "discrete"):
            values = [1 if b else 0 for b in response.bits[:count]]
        else:
            values = list(response.registers)
        if len(values) != count:
            raise NoResponse(f"unit {unit}: {kind} {address}+{count}: got {len(values)} values")
        return values

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None:
        """FC05 for one coil, FC15 for several."""
        if len(values) == 1:
            one = WriteSingleCoilRequest(address=address, bits=[bool(values[0])])
            await self._call(unit, _pdu(one), WriteSingleCoilResponse, f"coil {address}")
        else:
            bits = [bool(v) for v in values]
            many = WriteMultipleCoilsRequest(address=address, bits=bits)
            what = f"coils {address}+{len(values)}"
            await self._call(unit, _pdu(many), WriteMultipleCoilsResponse, what)

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None:
        """FC06 for one register, FC16 for several."""
        if len(values) == 1:
            one = WriteSingleRegisterRequest(address=address, registers=[values[0]])
            what = f"register {address}"
            await self._call(unit, _pdu(one), WriteSingleRegisterResponse, what)
        else:
            many = WriteMultipleRegistersRequest(address=address, registers=list(values))
            what = f"registers {address}+{len(values)}"
            await self._call(unit, _pdu(many), WriteMultipleRegistersResponse, what)
