"""One open Modbus connection as an asyncio Protocol: a request frame out, its answer in.

drivers.modbus.transport's Link builds each request PDU with pymodbus's request classes and
hands it here; `Channel.ask` frames it with pymodbus's framer (FramerSocket over TCP, FramerRTU
on a serial line), writes it and waits for the answer: the first whole frame from the asked
unit (over TCP also carrying the request's transaction id) with the request's function code or
its exception form, decoded into pymodbus's response PDU class (a register read's values
in one unpack, `decode_registers`, which tests hold equal to pymodbus's own decode). Frames
from another unit are counted in `strays` and skipped; a frame whose CRC fails or that does
not decode is dropped, so it ends as no answer (None). The serial port is driven by
pymodbus's SerialTransport (it calls `data_received`); a TCP connection is a plain asyncio
socket transport, which reads into the channel's own buffer (`get_buffer`/`buffer_updated`).

Why not pymodbus's own client: its transaction manager formats every decoded PDU with str()
and appends every packet to a frame ring buffer even with its logging off, which cost more CPU
per request than everything else on our side of the wire. This module keeps one request in
flight (the Link serialises), does not retry, log or map errors (the Link does), and keeps
pymodbus's framers and PDU classes as the definition of the wire format.
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerBase, FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

# pymodbus's table of every response class it knows (a client's side of the table): used to
# find where another unit's RTU frame ends, so that the frame after it is still seen.
_RESPONSES = DecodePDU(is_server=False)
_RTU_MIN = 4  # address, function code, CRC
_MAX_BUFFER = 2 * FramerBase.MAX_SIZE  # more than this without a frame: noise, dropped
_REGISTER_REPLIES = (ReadHoldingRegistersResponse, ReadInputRegistersResponse)
_WORDS = [struct.Struct(f">{n}H") for n in range(128)]  # 0..127 big-endian registers
_INBOX = 4096  # bytes per socket read: many whole TCP frames (260 bytes at most each)


class Channel(asyncio.BufferedProtocol):
    """The protocol side of one connection; `asyncio` calls the callbacks, the Link `ask`s.

    A BufferedProtocol so that a socket transport reads into `_inbox`: with plain
    `data_received`, asyncio's socket transport asks recv() for up to 256 KiB every read, and
    glibc serves an allocation that size with mmap, shrinks it with mremap and frees it with
    munmap: about 18 us of system time per answer here, more than the rest of the read."""

    def __init__(self, rtu: bool) -> None:
        self.rtu = rtu
        self.framer: FramerBase = FramerRTU(_RESPONSES) if rtu else FramerSocket(_RESPONSES)
        self.strays = 0  # frames from a unit we were not asking (a late, slow slave)
        self.lost: BaseException | None = None  # why the connection ended, once it has
        self._transport: asyncio.Transport | None = None
        # The loop it is made in, kept: on 3.11 each asyncio.get_running_loop() is a getpid()
        # system call (a check for a fork), and this path ran three a request.
        self._loop = asyncio.get_running_loop()
        self._made: asyncio.Future[None] = self._loop.create_future()
        self._buffer = b""
        self._inbox = memoryview(bytearray(_INBOX))
        self._tid = 0
        # The request in flight: who was asked, what answers it, where the answer goes.
        self._unit = 0
        self._function = 0
        self._reply: type[ModbusPDU] = ModbusPDU
        self._waiting: asyncio.Future[ModbusPDU | None] | None = None
        # The deadline, kept lazily (see `ask`): the request in flight's own, and the one loop
        # timer that is armed (for that deadline or an earlier one), if any.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a socket's or pymodbus's serial
        if not self._made.done():
            self._made.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone(exc or ConnectionError("closed by the other end"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._inbox  # the transport reads at most this much; the rest comes next read

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._inbox[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting
        if waiting is None or waiting.done():
            return  # nothing asked: whatever this is, it answers no request of ours
        self._buffer += data
        while (frame := self._next_frame()) is not None:
            unit, tid, pdu = frame
            # Over TCP, unit 0 means "the device": any unit id in the answer will do.
            if unit != self._unit and (self.rtu or self._unit):
                self.strays += 1
                continue
            if tid != self._tid:
                continue  # over TCP: the late answer to an earlier, timed-out request
            if (response := self._decode(pdu)) is not None:
                waiting.set_result(response)
                # Runs after the asker's next step (queued behind its wake-up): by then it has
                # either asked again, and the armed deadline timer serves that request too,
                # or it has gone quiet, and the timer is cancelled (no wake-up for nothing).
                self._loop.call_soon(self._rest)
                return

    # -- the Link's side ------------------------------------------------------------------
    async def opened(self) -> None:
        """Wait until the transport has called `connection_made` (serial: on the next pass)."""
        await self._made

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def close(self) -> None:
        self._gone(ConnectionError("closed"))

    async def ask(
        self, unit: int, request: bytes, reply: type[ModbusPDU], within: float
    ) -> ModbusPDU | None:
        """Send `request` (function code and data) to `unit`; its answer, an ExceptionResponse,
        or None when no valid answer came `within` seconds. Raises ConnectionError when the
        connection is or gets lost."""
        transport = self._transport
        if transport is None:
            raise ConnectionError(f"not connected ({self.lost})")
        if not self.rtu:
            self._tid = self._tid % 0xFFFF + 1  # 1..65535: 0 is never a live request's id
        loop = self._loop
        waiting: asyncio.Future[ModbusPDU | None] = loop.create_future()
        self._unit, self._function, self._reply = unit, request[0], reply
        self._buffer = b""  # a partial frame from before this request answers something else
        self._waiting = waiting
        transport.write(self.framer.encode(request, unit, self._tid))
        # One loop timer per request (call_later, cancel, the heap's upkeep: ~2.5 us here)
        # is not needed: requests in a row share one. A timer armed no later than this
        # deadline stays; when it fires, `_due` ends the request in flight if this was its
        # deadline, else re-arms for that request's own. Tests: test_modbus_deadline.
        self._deadline = deadline = loop.time() + within
        if self._timer is None or self._timer_at > deadline:
            self._arm(deadline)
        try:
            return await waiting
        finally:
            self._waiting = None
            if waiting.cancelled():
                self._rest()  # the asker gave up (cancelled): no timer left to fire for nothing

    # -- framing --------------------------------------------------------------------------
    def _next_frame(self) -> tuple[int, int, bytes] | None:
        """The next whole frame in the buffer as (unit, transaction id, PDU), consumed; None
        until one is complete."""
        if not self.rtu:
            used, unit, tid, pdu = self.framer.decode(self._buffer)
            if not used:
                if len(self._buffer) > _MAX_BUFFER:
                    self._buffer = b""
                return None
            self._buffer = self._buffer[used:]
            return unit, tid, pdu
        return self._next_rtu_frame()

    def _next_rtu_frame(self) -> tuple[int, int, bytes] | None:
        # pymodbus's FramerRTU.decode consumes the whole buffer with the first frame, and with
        # it an answer that arrived in the same read behind another unit's late one; so the
        # frame's end is found here, from the length pymodbus's PDU class gives it.
        buffer, start = self._buffer, 0
        while len(buffer) - start >= _RTU_MIN:
            candidate = buffer[start:]
            try:
                kind = _RESPONSES.lookupPduClass(candidate)
                size = kind.calculateRtuFrameSize(candidate) if kind else -1
            except (ModbusException, IndexError, KeyError):
                size = -1
            if size < 0:  # no function code we know: hunt for a frame start
                start += 1
                continue
            if size == 0 or len(candidate) < size:
                break  # the rest of the frame is on its way
            crc = int.from_bytes(candidate[size - 2 : size], "big")
            if not FramerRTU.check_CRC(candidate[: size - 2], crc):
                # Noise, or a frame misread from the middle: drop what came (as pymodbus does);
                # the request times out and is asked again.
                self._buffer = b""
                return None
            self._buffer = candidate[size:]
            return candidate[0], 0, candidate[1 : size - 2]
        self._buffer = buffer[start:]
        return None

    def _decode(self, pdu: bytes) -> ModbusPDU | None:
        """The answer's PDU object, or None for another function code or an undecodable one."""
        function = pdu[0]
        try:
            if function == self._function | 0x80:
                refusal = ExceptionResponse(self._function)
                refusal.decode(pdu[1:])
                return refusal
            if function != self._function:
                return None
            response = self._reply()
            if self._reply in _REGISTER_REPLIES:
                decode_registers(response, pdu)
            else:
                response.decode(pdu[1:])
        except (ModbusException, ValueError, IndexError, struct.error):
            return None
        return response

    # -- the deadline -----------------------------------------------------------------------
    def _arm(self, when: float) -> None:
        self._disarm()
        self._timer = self._loop.call_at(when, self._due)
        self._timer_at = when

    def _due(self) -> None:
        """The armed timer fired: the request in flight is over if this was its deadline."""
        self._timer = None
        waiting = self._waiting
        if waiting is None or waiting.done():
            return  # nothing in flight (`_rest` had not run yet): nothing to re-arm
        if self._deadline <= self._timer_at:
            waiting.set_result(None)
        else:
            self._arm(self._deadline)

    def _rest(self) -> None:
        """Cancel the deadline timer when no request is in flight (see data_received)."""
        if self._waiting is None:
            self._disarm()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _gone(self, why: BaseException) -> None:
        transport, self._transport = self._transport, None
        self._disarm()
        if self.lost is None:
            self.lost = why
        if not self._made.done():
            self._made.set_exception(ConnectionError(str(why)))
            self._made.exception()  # retrieved: nobody may be waiting for it any more
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(ConnectionError(f"connection lost: {why}"))
        if transport is not None:
            transport.close()


def decode_registers(response: ModbusPDU, pdu: bytes) -> None:
    """`response.decode(pdu[1:])` for a register read's answer (function 3 or 4) in one unpack.

    The same registers, or an error where pymodbus's `decode` raises one (its byte count not
    below the data's length, or no byte count), as tests hold over any bytes: pymodbus unpacks
    register by register, ~43 us for a 125-register answer here against ~5 us."""
    count = pdu[1]  # IndexError without a byte count, as pymodbus's data[0]
    if count >= len(pdu) - 1:
        raise ModbusException(f"byte_count {count} > length of packet {len(pdu) - 1}")
    response.registers = list(_WORDS[count // 2].unpack_from(pdu, 2))
