"""The test relay's delay (tests.relay, `delay=`), which bench/delay.py's distant broker
stands on: every byte arrives, in order, and not before its round trip."""

from __future__ import annotations

import asyncio

from tests.relay import Relay


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_a_delaying_relay_keeps_order_and_holds_each_way():
    delay = 0.05
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    peer = server.sockets[0].getsockname()[1]
    try:
        async with Relay(peer, delay=delay) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            loop = asyncio.get_running_loop()
            sent = [bytes([i]) * (1000 + 7919 * i) for i in range(20)]  # 1 kB to 150 kB
            start = loop.time()
            for chunk in sent:
                writer.write(chunk)
            await writer.drain()
            first = await reader.readexactly(len(sent[0]))
            back = loop.time() - start
            rest = await reader.readexactly(sum(map(len, sent[1:])))
            writer.close()
            assert first + rest == b"".join(sent)  # every byte, in order
            assert back >= 2 * delay  # there and back, each way held
            assert relay.sent == relay.received == sum(map(len, sent))
            # Each way at least one chunk, none early; the lateness it reports is real time.
            late = relay.late
            assert late.chunks >= 2 and 0 <= late.least <= late.worst
            assert late.seconds <= late.chunks * late.worst
    finally:
        server.close()
