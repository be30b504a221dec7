"""The monitor socket in process, with hostile and slow clients: a garbage or overlong
request, no request, a client that never reads, a client that hangs up; a stale socket file
from a killed daemon; a socket already served by a live daemon. And the tail line format."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from gateway.cli.tail import line
from gateway.model import Lane, Reading
from gateway.monitor import QUEUE, REQUEST_MAX, Monitor, socket_path


def reading(seq: int, device: str = "paddy-1", quantity: str = "water_level", **kw) -> Reading:
    return Reading(seq, device, quantity, 5.0 + seq, "cm", 1.8e9 + seq, True, Lane.TELEMETRY, **kw)


class Link:
    def __init__(self) -> None:
        self.state = (True, "")

    def __call__(self) -> tuple[bool, str]:
        return self.state


@pytest.fixture
async def monitor(tmp_path, log):
    m = Monitor(
        str(tmp_path / "run"), lambda: {"pid": 1, "x": "y"}, Link(), log, request_timeout=0.3
    )
    assert await m.start()
    yield m
    await m.stop()


async def talk(m: Monitor, data: bytes) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(str(m.path))
    writer.write(data)
    writer.write_eof()  # the request ends here, complete or not
    await writer.drain()
    out = [json.loads(x) for x in (await reader.read()).splitlines()]
    writer.close()
    return out


async def open_tail(m: Monitor, **filters: str):
    reader, writer = await asyncio.open_unix_connection(str(m.path))
    writer.write(json.dumps({"op": "tail", **filters}).encode() + b"\n")
    hello = json.loads(await reader.readline())
    assert hello["event"] == "hello"
    return reader, writer


async def test_status_request_gets_the_snapshot_and_the_socket_is_private(monitor) -> None:
    assert await talk(monitor, b'{"op": "status"}\n') == [{"status": {"pid": 1, "x": "y"}}]
    assert monitor.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("request_bytes", "says"),
    [
        (b"hello\n", "not JSON"),
        (b'{"op": "rm -rf"}\n', "unknown request"),
        (b"[1, 2]\n", "unknown request"),
        (b'{"op": "tail", "device": 5}\n', "device must be a string"),
        (b"\xff\xfe\n", "not JSON"),
        (b'{"op": "status"' + b" " * (REQUEST_MAX + 10) + b"}\n", "longer than"),
        (b'{"op": "sta', "not JSON"),  # hangs up half-way through
    ],
)
async def test_a_bad_request_gets_one_error_line_and_the_monitor_serves_on(
    monitor, request_bytes, says
) -> None:
    answer = await talk(monitor, request_bytes)
    assert len(answer) == 1 and says in answer[0]["error"], answer
    assert await talk(monitor, b'{"op": "status"}\n') == [{"status": {"pid": 1, "x": "y"}}]


async def test_a_client_that_sends_nothing_is_hung_up_on(monitor) -> None:
    reader, writer = await asyncio.open_unix_connection(str(monitor.path))
    answer = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert "no request within" in answer["error"]
    assert await reader.read() == b""  # closed
    writer.close()


async def test_tail_streams_readings_alerts_device_and_link_changes_with_filters(monitor) -> None:
    everything = await open_tail(monitor)
    paddy2 = await open_tail(monitor, device="paddy-2")
    levels = await open_tail(monitor, quantity="water_level")
    monitor.observe([reading(1), reading(2, "paddy-2", "water_temperature")])
    alert = json.dumps({"status": "active", "severity": "high", "description": "low water"})
    monitor.observe([Reading(3, "paddy-2", "alert", alert, "", 1.8e9, True, Lane.ALERT)])
    monitor.observe([Reading(4, "paddy-2", "mail", "{}", "", 1.8e9, True, Lane.MAIL)])
    monitor.device_state("paddy-2", False, "no answer from unit 3")
    link: Link = monitor.link  # type: ignore[assignment]
    link.state = (False, "connection refused")
    runner = asyncio.create_task(monitor.run())

    async def events(stream, n: int) -> list[dict]:
        return [json.loads(await asyncio.wait_for(stream[0].readline(), 5)) for _ in range(n)]

    got = await events(everything, 5)
    assert [e["event"] for e in got] == ["reading", "reading", "alert", "device", "uplink"]
    assert got[0] == {
        "event": "reading",
        "time": "2027-01-15T08:00:01Z",
        "device": "paddy-1",
        "quantity": "water_level",
        "value": 6.0,
        "unit": "cm",
        "synced": True,
        "plausible": True,
    }
    assert got[2]["alert"]["description"] == "low water"
    assert got[3] == {
        "event": "device",
        "device": "paddy-2",
        "available": False,
        "reason": "no answer from unit 3",
    }
    assert got[4] == {"event": "uplink", "connected": False, "reason": "connection refused"}
    only2 = await events(paddy2, 4)
    assert {e.get("device", "paddy-2") for e in only2} == {"paddy-2"}
    assert [e["event"] for e in only2] == ["reading", "alert", "device", "uplink"]
    lv = await events(levels, 1)
    assert lv[0]["quantity"] == "water_level"
    runner.cancel()
    for _, writer in (everything, paddy2, levels):
        writer.close()


async def test_a_client_that_never_reads_loses_the_oldest_and_is_told(monitor) -> None:
    reader, writer = await open_tail(monitor)
    # More than the queue holds, all at once (the writer gets no turn in between).
    monitor.observe([reading(i) for i in range(QUEUE + 500)])
    first = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert first == {"event": "dropped", "count": 500}
    nxt = json.loads(await reader.readline())
    assert nxt["value"] == 5.0 + 500  # the oldest 500 went, the rest come in order
    writer.close()


async def test_a_client_hanging_up_is_forgotten(monitor) -> None:
    _, writer = await open_tail(monitor)
    assert len(monitor.clients) == 1
    writer.close()
    async with asyncio.timeout(5):
        while monitor.clients:
            monitor.observe([reading(1)])
            await asyncio.sleep(0.01)


async def test_a_stale_socket_file_is_replaced_and_a_live_one_is_left_alone(tmp_path, log):
    run = tmp_path / "run"
    run.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path(str(run))))  # bound, never listening: a killed daemon's file
    stale.close()
    first = Monitor(str(run), dict, Link(), log)
    assert await first.start()
    second = Monitor(str(run), dict, Link(), log)
    assert not await second.start()  # the first still serves: not taken over
    assert await talk(first, b'{"op": "status"}\n') == [{"status": {}}]
    await first.stop()
    assert not socket_path(str(run)).exists()


async def test_an_unusable_runtime_dir_leaves_the_daemon_without_a_socket(tmp_path, log):
    blocker = tmp_path / "file"
    blocker.write_text("")
    m = Monitor(str(blocker / "run"), dict, Link(), log)
    assert not await m.start()
    m.observe([reading(1)])  # still safe to feed
    await m.stop()


def test_tail_lines_read_at_a_glance() -> None:
    r = {
        "event": "reading",
        "time": "2027-01-15T08:00:01Z",
        "device": "paddy-1",
        "quantity": "water_level",
        "value": 4.25,
        "unit": "cm",
        "synced": False,
        "plausible": False,
    }
    text = line(r)
    assert text is not None
    assert "paddy-1" in text and "water_level" in text and "4.25 cm" in text
    assert "IMPLAUSIBLE" in text and "clock not synced" in text
    down = line({"event": "device", "device": "buoy", "available": False, "reason": "timeout"})
    assert down is not None and "buoy DOWN: timeout" in down
    lost = line({"event": "dropped", "count": 12})
    assert lost is not None and "12 events dropped" in lost
    assert line({"event": "something new"}) is None


def test_socket_path_lives_in_the_runtime_dir() -> None:
    assert socket_path("/run/gateway") == Path("/run/gateway/gateway.sock")
