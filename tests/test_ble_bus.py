"""The BLE bus logic: routing, de-duplication, throttling, presence, states; the replay source."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.ble import bthome, create_bus
from drivers.ble.advert import Advert, uuid16
from drivers.ble.replay import format_line, parse_line
from drivers.ble.router import Emission, Router, StateChange
from gateway.config import loader as config
from gateway.contract import BusContext
from gateway.errors import DecodeError
from gateway.model import Observation
from tests.configs import load_config
from tests.fakes import RecordingSink

KEY = "231d39c1d7cc1ab1aee224cd096db932"
T1 = "A4:C1:38:00:00:01"
T2 = "A4:C1:38:00:00:02"
TAG = "C0:FF:EE:00:00:01"
ENC = "54:48:E6:8F:80:A5"
IBEACON = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e00001002ac5")


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def _log(self, level: str, event: str, **kw: object) -> None:
        self.lines.append((level, event, kw))

    def info(self, event: str, **kw: object) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: object) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: object) -> None:
        self._log("error", event, **kw)

    def bind(self, **kw: object) -> RecordingLog:
        return self


def _config(bus_keys: str = "", transport: str = "ble-replay", file: str = "x.txt"):
    text = load_config(
        "ble_router",
        transport=transport,
        file=f'file = "{file}"' if transport == "ble-replay" else "",
        bus=bus_keys,
        t1=T1,
        t2=T2,
        enc=ENC,
        key=KEY,
        tag=TAG,
    )
    return config.parse(text).buses[0]


def _bt(address: str, hexdata: str, rssi: int = -60) -> Advert:
    return Advert(address, rssi, service={uuid16(0xFCD2): bytes.fromhex(hexdata)})


def _emissions(actions, device: str | None = None) -> list[Emission]:
    return [a for a in actions if isinstance(a, Emission) and device in (None, a.device)]


def test_unknown_addresses_are_ignored_and_counted() -> None:
    router = Router(_config().devices, 0.0)
    assert router.advert(_bt("11:22:33:44:55:66", "4002CA09"), 1.0, 1.0) == []
    assert router.counters.ignored == 1 and router.counters.adverts == 0


def test_repeated_packet_id_is_dropped() -> None:
    router = Router(_config().devices, 0.0)
    first = router.advert(_bt(T2, "40000502CA09"), 1.0, 101.0)
    again = router.advert(_bt(T2, "40000502CA09", rssi=-70), 1.5, 101.5)  # RSSI-only update
    new = router.advert(_bt(T2, "40000602CB09"), 2.0, 102.0)
    assert _emissions(first) == [
        Emission("t2", (Observation("temperature", 25.06, "degC"),), 101.0)
    ]
    assert again == []
    assert _emissions(new)[0].observations == (Observation("temperature", 25.07, "degC"),)
    assert router.counters.duplicates == 1


def test_encrypted_repeats_dropped_by_counter() -> None:
    router = Router(_config().devices, 0.0)
    payload = bthome.encrypt(bytes.fromhex("02CA09"), bytes.fromhex(KEY), ENC, 7).hex()
    assert len(_emissions(router.advert(_bt(ENC, payload), 1.0, 1.0))) == 1
    assert router.advert(_bt(ENC, payload), 2.0, 2.0) == []
    nxt = bthome.encrypt(bytes.fromhex("02CB09"), bytes.fromhex(KEY), ENC, 8).hex()
    assert len(_emissions(router.advert(_bt(ENC, nxt), 3.0, 3.0))) == 1


def test_throttle_keeps_the_latest_and_flushes_on_tick() -> None:
    router = Router(_config().devices, 0.0)
    assert len(_emissions(router.advert(_bt(T1, "40000102C409"), 0.0, 1000.0))) == 1
    assert router.advert(_bt(T1, "40000202C509"), 10.0, 1010.0) == []
    assert router.advert(_bt(T1, "40000302C609"), 20.0, 1020.0) == []
    assert _emissions(router.tick(30.0, 1030.0)) == []
    flushed = _emissions(router.tick(61.0, 1061.0), "t1")
    assert flushed == [Emission("t1", (Observation("temperature", 25.02, "degC"),), 1020.0)]
    assert router.counters.throttled == 2


def test_discrete_change_and_trigger_events_bypass_the_throttle() -> None:
    router = Router(_config().devices, 0.0)
    router.advert(_bt(T1, "4000011A00"), 0.0, 0.0)
    assert router.advert(_bt(T1, "4000021A00"), 1.0, 1.0) == []  # same door state: throttled
    opened = _emissions(router.advert(_bt(T1, "4000031A01"), 2.0, 2.0))
    assert opened[0].observations == (Observation("door", True, ""),)
    press = _emissions(router.advert(_bt(T1, "4400043A01"), 3.0, 3.0))
    assert press[0].observations == (Observation("button", "press", ""),)


def test_wrong_key_is_one_state_change_per_device_until_it_decodes() -> None:
    router = Router(_config().devices, 0.0)
    wrong = bthome.encrypt(bytes.fromhex("02CA09"), b"\x00" * 16, ENC, 1).hex()
    first = router.advert(_bt(ENC, wrong), 1.0, 1.0)
    assert first == [
        StateChange(
            "enc",
            False,
            "cannot decode: BTHome decryption failed: wrong bindkey "
            "(or advert corrupted / from another MAC)",
        )
    ]
    assert router.advert(_bt(ENC, wrong), 2.0, 2.0) == []
    # other devices are unaffected
    assert len(_emissions(router.advert(_bt(T2, "4002CA09"), 2.0, 2.0))) == 1
    good = bthome.encrypt(bytes.fromhex("02CA09"), bytes.fromhex(KEY), ENC, 2).hex()
    back = router.advert(_bt(ENC, good), 3.0, 3.0)
    assert back[0] == StateChange("enc", True) and len(_emissions(back)) == 1
    assert router.counters.decode_errors == 2


def test_silence_marks_a_device_down_once_and_an_advert_brings_it_back() -> None:
    router = Router(_config().devices, 0.0)
    router.advert(_bt(T1, "4002CA09"), 5.0, 5.0)
    assert router.tick(50.0, 50.0) == []
    down = [a for a in router.tick(106.0, 106.0) if isinstance(a, StateChange)]
    assert down == [StateChange("t1", False, "no advertisement for 101 s")]
    assert [
        a for a in router.tick(200.0, 200.0) if isinstance(a, StateChange) and a.device == "t1"
    ] == []
    assert router.advert(_bt(T1, "4002CB09"), 201.0, 201.0)[0] == StateChange("t1", True)


def test_trigger_based_devices_are_never_stale() -> None:
    router = Router(_config().devices, 0.0)
    router.advert(_bt(T1, "4400013A01"), 1.0, 1.0)
    assert [
        a for a in router.tick(500.0, 500.0) if isinstance(a, StateChange) and a.device == "t1"
    ] == []


def test_beacon_presence_events() -> None:
    router = Router(_config().devices, 0.0)
    tag = Advert(TAG, -71, manufacturer={0x004C: IBEACON})
    absent = _emissions(router.tick(61.0, 61.0))
    assert absent == [Emission("tag", (Observation("presence", False, ""),), 61.0)]
    assert _emissions(router.tick(62.0, 62.0)) == []
    seen = _emissions(router.advert(tag, 70.0, 70.0))
    assert seen == [
        Emission("tag", (Observation("presence", True, ""), Observation("rssi", -71, "dBm")), 70.0)
    ]
    assert router.advert(tag, 80.0, 80.0) == []  # still present: no new event
    assert _emissions(router.tick(120.0, 120.0)) == []
    gone = _emissions(router.tick(141.0, 141.0))
    assert gone == [Emission("tag", (Observation("presence", False, ""),), 141.0)]


def test_replay_line_round_trip_and_errors() -> None:
    advert = Advert(T1, -67, {0x0499: b"\x05\x01"}, {uuid16(0xFCD2): b"\x40\x02"})
    line = format_line(1.5, advert)
    assert line == "1.500 A4:C1:38:00:00:01 -67 m:0499=0501 s:fcd2=4002"
    assert parse_line(line) == (1.5, advert)
    assert parse_line("  # comment") is None
    for bad, message in [
        ("1.0 A4:C1:38:00:00:01", "expected"),
        ("x A4:C1:38:00:00:01 -1", "bad time"),
        ("1.0 nope -1", "bad address"),
        ("1.0 A4:C1:38:00:00:01 -1 s:fcd2=4", "bad data item"),
        ("1.0 A4:C1:38:00:00:01 -1 q:fcd2=40", "bad data item"),
    ]:
        with pytest.raises(DecodeError, match=message):
            parse_line(bad)


async def test_replay_bus_delivers_decoded_readings(tmp_path: Path) -> None:
    enc1 = bthome.encrypt(bytes.fromhex("0001 02CA09".replace(" ", "")), bytes.fromhex(KEY), ENC, 1)
    lines = [
        "# recorded on the rig",
        f"0.00 {T2} -60 s:fcd2=40000102CA0903BF13",
        f"0.01 {T2} -61 s:fcd2=40000102CA0903BF13",  # same packet again
        "0.02 garbage line",
        "0.03 11:22:33:44:55:66 -80 s:fcd2=4002CA09",  # not configured
        f"0.04 {ENC} -70 s:fcd2={enc1.hex()}",
        f"0.05 {T2} -60 s:fcd2=40000202D209",
        f"0.06 {TAG} -75 m:004c={IBEACON.hex()}",
    ]
    path = tmp_path / "adverts.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sink, log = RecordingSink(), RecordingLog()
    bus = create_bus(_config("speed = 0.0", file=str(path)), BusContext(sink=sink, log=log))
    task = asyncio.create_task(bus.run())
    try:
        await sink.wait_for(lambda s: len(s.emitted) >= 4, timeout=10)
        async with asyncio.timeout(5):
            await bus.idle.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.values("t2", "temperature") == [25.06, 25.14]
    assert sink.values("t2", "humidity") == [50.55]
    assert sink.values("enc", "temperature") == [25.06]
    assert sink.values("tag", "presence") == [True]
    assert bus.router.counters.duplicates == 1
    assert bus.router.counters.ignored == 1
    skipped = [kw for level, event, kw in log.lines if event == "replay line skipped"]
    assert skipped == [{"file": str(path), "line": 4, "error": "bad address 'garbage'"}]


async def test_replay_missing_file_is_logged_once_not_raised(tmp_path: Path) -> None:
    sink, log = RecordingSink(), RecordingLog()
    missing = tmp_path / "nope.txt"
    bus = create_bus(_config(file=str(missing)), BusContext(sink=sink, log=log))
    task = asyncio.create_task(bus.run())
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    downs = [kw for level, event, kw in log.lines if event == "replay down"]
    assert len(downs) == 1 and "cannot read replay file" in str(downs[0]["reason"])
