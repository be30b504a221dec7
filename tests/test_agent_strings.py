"""Strings through the real FIWARE IoT Agent JSON into a context broker that refuses what Orion
refuses (issue 11, items 1 and 7): alerts raised by the alert code, with the issue's
description and a nastier one, and a string reading with hostile text arrive (no refusal);
a single measure group stays a plain object (a one-element array would become an attribute
named "0")."""

from __future__ import annotations

import json

from gateway.model import Reading
from gateway.outbox.store import Outbox
from gateway.uplink import orion
from tests.agent_setup import fresh_apikey, running_uplink, telemetry, until, uplink_config
from tests.alert_setup import config_text, parse, stack
from tests.iotagent import City
from tests.mqtt_peer import Collector

ISSUE = "Water below 3.6 cm (transplanting depth)"
NASTY = "He said \"run\"; <script>alert('x')</script> a=b (田んぼ) 'quoted'"
HOSTILE_TEXT = "<b>\"full\"</b>; level=(high) 'now' 満水"


def refusals_of(city: City, entity: str) -> list[object]:
    return [r for r in city.cb.refusals if entity in json.dumps(r.body, ensure_ascii=False)]


def restored(value: object) -> object:
    """The one rule undone in every string of a value (what a reader of the entity sees)."""
    if isinstance(value, str):
        return orion.restore(value)
    if isinstance(value, dict):
        return {orion.restore(k): restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restored(v) for v in value]
    return value


async def test_alerts_with_the_issue_description_and_hostile_texts_arrive(
    city: City, tmp_path, log
) -> None:
    apikey = fresh_apikey("strings")
    city.agent.provision_group(apikey)
    paddy = city.agent.provision_device("paddy-01", apikey, entity_type="WaterObserved")
    traps = city.agent.provision_device("traps-9", apikey, entity_type="Trap")
    extra = (
        f"description = {json.dumps(ISSUE)}\n\n"
        "[[alerts.rules]]\n"
        'name = "nasty"\nkind = "event"\nquantity = "trap_state"\nequals = "triggered"\n'
        f'severity = "high"\ngroups = ["hunters"]\ndescription = {json.dumps(NASTY)}\n'
    )
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite"), extra=extra))
    async with stack(cfg, tmp_path / "o.sqlite", {}) as (outbox, pipe, alerting):
        await alerting.commands["alert-test"]({"rule": "paddy-dry", "device": "paddy-01"})
        await alerting.commands["alert-test"]({"rule": "nasty", "device": "traps-9"})
        await pipe.flush()
        async with running_uplink(uplink_config(city, apikey), outbox, log):
            await until(
                lambda: (
                    (city.cb.attr(paddy, "alert") and city.cb.attr(traps, "alert"))
                    or refusals_of(city, paddy)
                    or refusals_of(city, traps)
                )
            )
    assert refusals_of(city, paddy) == [] and refusals_of(city, traps) == []
    low = city.cb.attr(paddy, "alert")
    nasty = city.cb.attr(traps, "alert")
    assert orion.is_safe(low) and orion.is_safe(nasty)
    assert restored(low["description"]) == ISSUE
    assert low["description"] == "Water below 3.6 cm \uff08transplanting depth\uff09"
    assert restored(nasty["description"]) == NASTY
    assert (low["type"], low["subCategory"], low["alertSource"]) == (
        "Alert",
        "paddy-dry",
        "paddy-01",
    )
    assert nasty["severity"] == "high" and nasty["test"] is True


async def test_a_string_reading_with_hostile_text_arrives(city: City, tmp_path, log) -> None:
    apikey = fresh_apikey("strings")
    city.agent.provision_group(apikey)
    entity = city.agent.provision_device(
        "note-1", apikey, attributes=[{"object_id": "note", "name": "note", "type": "Text"}]
    )
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        (seq,) = outbox.allocate(1)
        await outbox.append([Reading(seq, "note-1", "note", HOSTILE_TEXT, "", 1.8e9)])
        async with running_uplink(uplink_config(city, apikey), outbox, log):
            await until(
                lambda: city.cb.attr(entity, "note") is not None or refusals_of(city, entity)
            )
    assert refusals_of(city, entity) == []
    value = city.cb.attr(entity, "note")
    assert orion.is_safe(value) and orion.restore(value) == HOSTILE_TEXT


async def test_a_single_measure_group_stays_a_plain_object(city: City, tmp_path, log) -> None:
    """The agent turns a one-element array into an attribute named "0" (shown first with a
    hand-made message): the uplink sends one group as a plain object, so the value lands."""
    apikey = fresh_apikey("strings")
    city.agent.provision_group(apikey)
    attrs = [{"object_id": "water_level", "name": "waterLevel", "type": "Number"}]
    wrapped = city.agent.provision_device("wrapped-1", apikey, attributes=attrs)
    plain = city.agent.provision_device("plain-1", apikey, attributes=attrs)
    hand = Collector(city.broker.port)
    try:
        body = [{"water_level": 4.5, "TimeInstant": "2027-01-15T08:00:00Z"}]
        hand.publish(f"/json/{apikey}/wrapped-1/attrs", json.dumps(body).encode())
        await until(lambda: city.cb.updates_of(wrapped))
    finally:
        hand.close()
    assert "0" in city.cb.entity(wrapped) and "waterLevel" not in city.cb.entity(wrapped)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        (one,) = telemetry(outbox, "plain-1", 1, t0=1.85e9)
        await outbox.append([one])
        async with running_uplink(uplink_config(city, apikey), outbox, log):
            await until(lambda: city.cb.updates_of(plain))
    (update,) = city.cb.updates_of(plain)
    assert set(update.attrs) == {"waterLevel", "TimeInstant"}  # no attribute "0"
    assert update.value("waterLevel") == 0.0 and "0" not in city.cb.entity(plain)
