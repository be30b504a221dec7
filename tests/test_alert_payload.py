"""Golden payloads of an alert row: the SDM Alert object embedded (not a string) in the JSON
formats on the device's topic, every string in it Orion-safe in fiware-json; UltraLight
carries it as flat attributes (`alert_category|...`)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gateway.alerts.alert import Alert, dumps
from gateway.model import Lane, Reading
from gateway.uplink import orion
from gateway.uplink.payload import Target, encode_fiware_json, encode_fiware_ul, encode_json, iso

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
    assert json.loads(msg.payload)["alert"] == orion.safe('{"a":1}')  # a string: Orion-safe


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


HOSTILE = replace(
    ALERT,
    rule="low(water)",
    device_name="East <receiver> 'A'",
    description='Water below 3.6 cm (transplanting depth); "check" <script>x=1</script>',
    category="agriculture",
    subcategory="level=low",
)


def _row(alert: Alert) -> Reading:
    return Reading(7, "traps-12", "alert", dumps(alert.to_sdm(iso(alert.ts))), "", alert.ts,
                   True, Lane.ALERT)  # fmt: skip


@pytest.mark.parametrize(
    "description", ["Water below 3.6 cm (transplanting depth)", HOSTILE.description, "水位低下"]
)
def test_fiware_json_alert_strings_are_orion_safe_and_restore_to_the_alert(description):
    """The issue: an alert whose description had parentheses was refused by Orion (lost after
    the broker's PUBACK). Every nested string now follows the one rule."""
    alert = replace(HOSTILE, description=description)
    (msg,) = encode_fiware_json([_row(alert)], TARGET, 65536)
    body = json.loads(msg.payload)
    assert orion.is_safe(body)
    sdm = alert.to_sdm(iso(alert.ts))
    assert _restored(body["alert"]) == sdm


def _restored(value: object) -> object:
    """The one rule undone in every string of a decoded JSON value (keys too)."""
    if isinstance(value, str):
        return orion.restore(value)
    if isinstance(value, dict):
        return {orion.restore(k): _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def test_fiware_ul_alert_is_flat_attributes_golden():
    (msg,) = encode_fiware_ul([ROW], TARGET, 65536)
    assert msg.topic == "/ul/key/traps-12/attrs" and msg.seqs == (7,)
    assert msg.payload.decode() == (
        "2026-06-01T05:00:00Z|alert_id|trap:traps-12:1780290000000|alert_category|agriculture"
        "|alert_subCategory|animalTrapped|alert_severity|high"
        "|alert_dateIssued|2026-06-01T05:00:00Z|alert_alertSource|traps-12"
        "|alert_status|active|alert_value|triggered|alert_location|36.115,137.954"
    )  # the empty description is left out: UltraLight refuses an empty field


def test_fiware_ul_hostile_alert_parses_as_ultralight_and_is_orion_safe():
    (msg,) = encode_fiware_ul([_row(HOSTILE)], TARGET, 65536)
    ts, *fields = msg.payload.decode().split("|")
    assert "#" not in msg.payload.decode() and len(fields) % 2 == 0 and all(fields)
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    assert all(orion.is_safe(v) for v in pairs.values())
    assert orion.restore(pairs["alert_description"]) == HOSTILE.description
    assert orion.restore(pairs["alert_subCategory"]) == "level=low"
    assert pairs["alert_location"] == "36.115,137.954"
