"""Golden payloads of an alert row: the SDM Alert object embedded (not a string) in the JSON
formats on the device's topic; UltraLight carries the text as it is."""

from __future__ import annotations

import json

from gateway.alerts.alert import Alert, dumps
from gateway.model import Lane, Reading
from gateway.uplink.payload import Target, encode_fiware_json, encode_json, iso

ALERT = Alert(
    id="trap:traps-12:1780290000000",
    rule="trap",
    status="alert",
    device="traps-12",
    device_name="East receiver",
    trap="12",
    value="triggered",
    ts=1_780_290_000.0,
    severity="high",
    category="agriculture",
    subcategory="animalTrapped",
    description="",
    latitude=36.115,
    longitude=137.954,
)
ROW = Reading(
    7, "traps-12", "alert", dumps(ALERT.to_sdm(iso(ALERT.ts))), "", ALERT.ts, True, Lane.ALERT
)
TARGET = Target("key", "gw-1")


def test_fiware_json_alert_golden():
    (msg,) = encode_fiware_json([ROW], TARGET, 65536)
    assert msg.topic == "/json/key/traps-12/attrs"
    assert msg.lane == Lane.ALERT and msg.seqs == (7,)
    assert msg.payload.decode() == (
        '{"alert":{"id":"trap:traps-12:1780290000000","type":"Alert","category":"agriculture",'
        '"subCategory":"animalTrapped","severity":"high","dateIssued":"2026-06-01T05:00:00Z",'
        '"alertSource":"traps-12","description":"","status":"active","value":"triggered",'
        '"location":{"type":"Point","coordinates":[137.954,36.115]}},'
        '"TimeInstant":"2026-06-01T05:00:00Z"}'
    )


def test_generic_json_alert_is_an_object_and_telemetry_is_untouched():
    (msg,) = encode_json([ROW], TARGET, 65536)
    (item,) = json.loads(msg.payload)
    assert item["value"]["subCategory"] == "animalTrapped"
    text = Reading(8, "d", "alert", '{"a":1}', "", 0.0)  # a telemetry value that looks like JSON
    (msg,) = encode_json([text], TARGET, 65536)
    assert json.loads(msg.payload)[0]["value"] == '{"a":1}'
    (msg,) = encode_fiware_json([text], TARGET, 65536)
    assert json.loads(msg.payload)["alert"] == '{"a":1}'


def test_the_one_timestamp_form_matches_a_plain_strftime():
    """gateway.clock.iso (payloads and alert dateIssued) caches the calendar part per day:
    it must agree with a plain formatting across fractions, rounding and day boundaries."""
    import time

    def plain(ts: float) -> str:
        secs, ms = divmod(round(ts * 1000), 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        return f"{stamp}.{ms:03d}Z" if ms else f"{stamp}Z"

    for ts in (0.0, 1_780_290_000.0, 1_780_290_000.5, 1_780_290_000.0004, 1_780_290_059.9996,
               1_709_164_800.123, 4_102_444_799.999, 86_399.9996):  # fmt: skip
        assert iso(ts) == plain(ts), ts
    assert iso(1_780_290_000.25) == "2026-06-01T05:00:00.250Z"
