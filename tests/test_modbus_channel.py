"""The Modbus link's own wire handling (drivers.modbus.channel behind transport.Link), against
peers that send exactly the bytes a test needs: a raw pty slave and a raw TCP server.

The simulator-based tests (test_modbus_tcp, test_modbus_rtu) cover polling; these pin what a
simulator cannot easily provoke: two frames in one read, a frame in pieces, a stale
transaction id, a CRC-broken answer followed by a good one, a peer that hangs up mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from drivers.modbus import rtu
from drivers.modbus.channel import decode_registers
from drivers.modbus.errors import NoResponse, UnitException
from drivers.modbus.options import BusOptions
from drivers.modbus.transport import Link
from gateway.errors import BusUnavailable
from tests.test_modbus_rtu import NullModem, raw_port

READ_2 = rtu.frame(1, bytes.fromhex("0300000002"))  # unit 1, holding 0+2


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[NullModem]:
    pair = NullModem(tmp_path)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


def read_bytes(fd: int, n: int, wait: float = 2.0) -> bytes:
    data = b""
    while len(data) < n and select.select([fd], [], [], wait)[0]:
        data += os.read(fd, n - len(data))
    return data


def rtu_options(modem: NullModem, timeout: float = 0.5, retries: int = 0) -> BusOptions:
    return BusOptions("modbus-rtu", port=modem.bus_end, timeout=timeout, retries=retries)


async def test_rtu_answer_behind_another_units_late_frame_in_the_same_read(
    modem: NullModem,
) -> None:
    fd = raw_port(modem.sim_end)
    try:
        async with Link(rtu_options(modem)) as link:

            async def slave() -> bytes:
                request = await asyncio.to_thread(read_bytes, fd, 8)
                late = rtu.frame(9, bytes([3, 2, 0x12, 0x34]))  # unit 9's overdue answer
                os.write(fd, late + rtu.frame(1, bytes([3, 4, 0, 7, 0, 8])))
                return request

            answering = asyncio.create_task(slave())
            values = await link.read(1, "holding", 0, 2)
            assert await answering == READ_2
            assert link.strays == 1
        # Only one request went out: the answer was found behind the stray, not asked again.
        assert await asyncio.to_thread(read_bytes, fd, 1, 0.2) == b""
    finally:
        os.close(fd)
    assert values == [7, 8]


async def test_rtu_answer_in_pieces_and_a_crc_broken_answer_retried(modem: NullModem) -> None:
    fd = raw_port(modem.sim_end)
    answer = rtu.frame(1, bytes([3, 4, 0x01, 0x02, 0xFF, 0xFE]))
    try:
        async with Link(rtu_options(modem, timeout=0.3, retries=1)) as link:

            async def slave() -> list[bytes]:
                requests = [await asyncio.to_thread(read_bytes, fd, 8)]
                os.write(fd, answer[:-1] + bytes([answer[-1] ^ 0xFF]))  # CRC broken: dropped
                requests.append(await asyncio.to_thread(read_bytes, fd, 8))  # the retry
                for byte in answer:  # then the good answer, one byte at a time
                    os.write(fd, bytes([byte]))
                    await asyncio.sleep(0.005)
                return requests

            answering = asyncio.create_task(slave())
            values = await link.read(1, "holding", 0, 2)
            assert await answering == [READ_2, READ_2]
            assert link.strays == 0
    finally:
        os.close(fd)
    assert values == [0x0102, 0xFFFE]


async def test_rtu_silence_is_no_response_after_every_try_and_a_refusal_is_the_code(
    modem: NullModem,
) -> None:
    fd = raw_port(modem.sim_end)
    try:
        async with Link(rtu_options(modem, timeout=0.1, retries=2)) as link:
            with pytest.raises(NoResponse, match=r"unit 1: no valid response to holding 0\+2 "):
                await link.read(1, "holding", 0, 2)
            assert await asyncio.to_thread(read_bytes, fd, 24, 0.3) == READ_2 * 3

            async def refuse() -> None:
                await asyncio.to_thread(read_bytes, fd, 8)
                os.write(fd, rtu.frame(1, bytes([0x83, 0x02])))

            refusing = asyncio.create_task(refuse())
            with pytest.raises(UnitException) as refused:
                await link.read(1, "holding", 0, 2)
            await refusing
    finally:
        os.close(fd)
    assert refused.value.code == 2


# -- Modbus TCP --------------------------------------------------------------------------
def tcp_answer(request: bytes, registers: list[int]) -> bytes:
    """A read-holding answer to `request` (an MBAP frame), by the spec, not by pymodbus."""
    tid, _, _, unit = struct.unpack(">HHHB", request[:7])
    body = struct.pack(f">BB{len(registers)}H", 3, 2 * len(registers), *registers)
    return struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(serve: Serve) -> AsyncIterator[BusOptions]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield BusOptions("modbus-tcp", host="127.0.0.1", port=str(port), timeout=0.3, retries=1)


async def test_tcp_a_late_answer_to_the_timed_out_try_is_not_taken_for_the_retry() -> None:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(12)  # no answer: the link times out and asks again
        second = await reader.readexactly(12)
        seen.extend((first, second))
        writer.write(tcp_answer(first, [1, 2]) + tcp_answer(second, [3, 4]))
        await reader.read()  # until the link closes

    async with tcp_server(serve) as options, Link(options) as link:
        assert await link.read(5, "holding", 0, 2) == [3, 4]
    first, second = seen
    assert first[2:] == second[2:] and first[:2] != second[:2]  # same request, new id


async def test_tcp_frames_cut_at_the_read_buffers_edge_are_joined_and_all_counted() -> None:
    # 400 other units' frames (6 KB, more than the channel's read buffer) and the head of our
    # answer in one write, its tail later: frames cut at a read's end are joined with the next
    # read's start, and a short read is only what came (not the buffer's older bytes).
    strays = 400

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(12)
        other = request[:6] + bytes([9]) + request[7:]
        answer = tcp_answer(request, [7, 8])
        writer.write(tcp_answer(other, [0] * 3) * strays + answer[:5])
        await writer.drain()
        await asyncio.sleep(0.05)  # if the two writes arrive as one read, the test is weaker
        writer.write(answer[5:])
        await reader.read()

    async with tcp_server(serve) as options, Link(options) as link:
        assert await link.read(5, "holding", 0, 2) == [7, 8]
        assert link.strays == strays


async def test_tcp_a_peer_hanging_up_mid_request_is_the_bus_gone_not_a_silent_unit() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(12)
        writer.close()

    async with tcp_server(serve) as options:
        # A long timeout: a hang-up taken for silence would end as NoResponse, much later.
        patient = BusOptions("modbus-tcp", host=options.host, port=options.port, timeout=10.0)
        async with Link(patient) as link:
            with pytest.raises(BusUnavailable, match="connection lost"):
                await link.read(1, "holding", 0, 2)
            assert not link.connected
            with pytest.raises(BusUnavailable, match="connection lost"):
                await link.read(1, "holding", 0, 2)


async def test_tcp_cannot_connect_names_the_address() -> None:
    options = BusOptions("modbus-tcp", host="127.0.0.1", port="1", timeout=0.5)
    with pytest.raises(BusUnavailable, match=r"127\.0\.0\.1:1: cannot connect: "):
        async with Link(options):
            pass


# -- the protocol alone, on noise ---------------------------------------------------------
class _Wire(asyncio.Transport):
    """A transport that keeps what is written (the protocol under test is fed by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("rtu_line", [True, False], ids=["rtu", "tcp"])
async def test_noise_in_any_chunks_never_breaks_the_protocol_and_a_clean_answer_still_counts(
    rtu_line: bool,
) -> None:
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

    from drivers.modbus.channel import Channel

    rng = random.Random(13)
    channel = Channel(rtu=rtu_line)
    wire = _Wire()
    channel.connection_made(wire)
    request = bytes.fromhex("0300000002")
    for _ in range(200):
        asking = asyncio.create_task(channel.ask(1, request, ReadHoldingRegistersResponse, 0.002))
        await asyncio.sleep(0)  # the request is on the wire
        noise = rng.randbytes(rng.randrange(1, 40))
        if rng.random() < 0.5:  # noise that starts like an answer from unit 1
            noise = bytes([1, 3, rng.randrange(256)]) + noise
        for cut in sorted(rng.sample(range(len(noise) + 1), 2)):
            channel.data_received(noise[:cut])
            noise = noise[cut:]
        channel.data_received(noise)
        answer = await asyncio.wait_for(asking, 5)  # noise never raises out of the protocol
        assert answer is None or isinstance(answer, ReadHoldingRegistersResponse)
    assert channel.connected and not wire.closed
    # After all that, a clean exchange still works.
    asking = asyncio.create_task(channel.ask(1, request, ReadHoldingRegistersResponse, 5.0))
    await asyncio.sleep(0)
    sent = wire.sent[-1]
    body = bytes([3, 4, 0, 7, 0, 8])
    if rtu_line:
        assert sent == READ_2
        channel.data_received(rtu.frame(1, body))
    else:
        assert sent[6:] == bytes([1]) + request
        channel.data_received(sent[:4] + struct.pack(">H", len(body) + 1) + bytes([1]) + body)
    answer = await asking
    assert isinstance(answer, ReadHoldingRegistersResponse) and answer.registers == [7, 8]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([ReadHoldingRegistersResponse, ReadInputRegistersResponse]),
    st.binary(max_size=260) | st.integers(0, 127).map(lambda n: bytes([2 * n]) + bytes(2 * n)),
    st.randoms(use_true_random=False),
)
def test_register_answers_decode_as_pymodbus_decodes_them(
    reply: type[ModbusPDU], body: bytes, rng: random.Random
) -> None:
    # Any bytes after the function code: the same registers as pymodbus's own decode, or an
    # error where it raises one.
    body = bytes(rng.randrange(256) for _ in body) if rng.random() < 0.5 else body
    pdu = bytes([reply.function_code]) + body

    def outcome(decode: Callable[[ModbusPDU], None]) -> object:
        response = reply()
        try:
            decode(response)
        except (ModbusException, IndexError):
            return "error"
        return list(response.registers)

    theirs = outcome(lambda r: r.decode(pdu[1:]))
    assert outcome(lambda r: decode_registers(r, pdu)) == theirs
