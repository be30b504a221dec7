"""The MQTT client's writes (gateway.uplink.client): what paho queues goes out at once, and a
socket that would block waits for the loop's writer instead of losing or stalling bytes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from gateway.uplink.client import Connection
from gateway.uplink.wire import Message
from tests.mqtt_peer import Collector
from tests.relay import Relay
from tests.test_uplink import BASE, wait_until

PAYLOAD = 60_000  # bytes per message
MESSAGES = 300  # 18 MB: more than loopback's socket buffers hold while the relay stalls


async def test_a_blocked_socket_keeps_every_message_and_sends_it_when_it_drains(
    broker, platform: Collector
) -> None:
    """QoS 0: no PUBACK comes to drive a write, so only the loop's writer can finish it."""
    async with Relay(broker.port) as relay:
        acked: list[int] = []
        cfg = replace(BASE, port=relay.port, max_payload_bytes=PAYLOAD * 2)
        conn = Connection(cfg, command_topic="cmd/x", on_puback=acked.append, on_lost=lambda: None)
        await conn.open()
        try:
            relay.stall.clear()  # the far end stops reading: our writes will block
            mids = []
            for i in range(MESSAGES):
                payload = i.to_bytes(4, "big") * (PAYLOAD // 4)
                delivery = conn.send(Message(f"t/{i}", payload, (i,)), 0)
                assert delivery.ok
                mids.append(delivery.mid)
            # Everything the kernel takes is written; the rest waits in paho for the writer.
            await wait_until(lambda: conn.client.want_write(), 10.0)
            await asyncio.sleep(0.2)
            assert conn.client.want_write() and len(acked) < MESSAGES  # blocked, kept
            relay.stall.set()
            # paho calls a QoS 0 message published when its last byte is written.
            await wait_until(lambda: len(acked) == MESSAGES, 30.0)
            assert sorted(acked) == sorted(mids)
            assert not conn.client.want_write()
            # Written is not yet forwarded: the relay may still hold megabytes in its socket
            # buffers, and closing it would cut them off (failed once on a slow machine with
            # 298 of 300 arrived).
            await platform.wait(lambda ms: len(ms) >= MESSAGES)
        finally:
            conn.disconnect()
            await asyncio.sleep(0.05)
            conn.close()
    got = {m.topic: m.payload for m in platform.messages if m.topic.startswith("t/")}
    assert len(got) == MESSAGES
    assert all(got[f"t/{i}"] == i.to_bytes(4, "big") * (PAYLOAD // 4) for i in range(MESSAGES))


async def test_with_one_message_in_flight_each_puback_releases_the_next_at_once(
    broker, platform: Collector
) -> None:
    """paho holds the rest of a burst while its window (inflight = 1) is full; every PUBACK
    we read sends the next from the same read, so the burst completes in order."""
    async with Relay(broker.port) as relay:
        acked: list[int] = []
        cfg = replace(BASE, port=relay.port, inflight=1)
        conn = Connection(cfg, command_topic="cmd/x", on_puback=acked.append, on_lost=lambda: None)
        await conn.open()
        try:
            mids = [conn.send(Message("t/one", str(i).encode(), (i,)), 1).mid for i in range(50)]
            await wait_until(lambda: len(acked) == 50, 10.0)
            assert acked == mids  # one at a time, in order
        finally:
            conn.disconnect()
            await asyncio.sleep(0.05)
            conn.close()
    await platform.wait(lambda ms: len([m for m in ms if m.topic == "t/one"]) >= 50)
    assert [m.payload for m in platform.messages if m.topic == "t/one"] == [
        str(i).encode() for i in range(50)
    ]
