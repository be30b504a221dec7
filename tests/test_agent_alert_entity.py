"""Alert rows become Smart Data Models `Alert` entities at the platform, with nothing but the
agent's own provisioning: group-level attributes that read the `alert` measure with JEXL
expressions and write them to an entity named after the alert. The provisioning is read from
docs/platform.md, so the page says what was proven against the real IoT Agent."""

from __future__ import annotations

from typing import Any

from gateway.alerts.alert import ALERT_QUANTITY, Alert, dumps
from gateway.clock import iso
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from tests.agent_setup import (
    as_provisioned,
    fresh_apikey,
    platform_blocks,
    running_uplink,
    until,
    uplink_config,
)
from tests.iotagent import City


def alert_group() -> dict[str, Any]:
    """The service group docs/platform.md gives for Alert entities."""
    (block,) = [b for b in platform_blocks() if b.get("services", [{}])[0].get("attributes")]
    return block


def trap_alert(ts: float) -> Alert:
    return Alert(
        id=f"trap-caught:traps-4:{int(ts * 1000)}",
        rule="trap-caught",
        status="alert",
        device="traps-4",
        device_name="Trap 4 (upper terrace)",
        trap="4",
        value=True,
        ts=ts,
        severity="high",
        category="agriculture",
        subcategory="trapCaught",
        description="Animal in trap 4 - check within the hour",
        latitude=34.6851,
        longitude=135.8048,
    )


async def test_alert_row_becomes_an_sdm_alert_entity(city: City, tmp_path, log) -> None:
    apikey = fresh_apikey("alert")
    status, body = city.agent.north(
        "POST", "/iot/services", as_provisioned(alert_group(), city, apikey)
    )
    assert status == 201, body
    alert = trap_alert(1.8e9)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        (seq,) = outbox.allocate(1)
        row = Reading(
            seq,
            alert.device,
            ALERT_QUANTITY,
            dumps(alert.to_sdm(iso(alert.ts))),
            "",
            alert.ts,
            True,
            Lane.ALERT,
            parent="traps",
        )
        await outbox.append([row])
        async with running_uplink(uplink_config(city, apikey), outbox, log):
            entity = f"urn:ngsi-ld:Alert:{alert.id}"
            await until(lambda: city.cb.attr(entity, "severity") is not None)
    got = city.cb.entity(entity)
    assert city.cb.refusals == []
    assert got["category"]["value"] == "agriculture"
    assert got["subCategory"]["value"] == "trapCaught"
    assert got["severity"]["value"] == "high"
    assert got["dateIssued"]["value"] == iso(alert.ts)
    assert got["alertSource"]["value"] == "traps-4"
    assert got["status"]["value"] == "active"
    assert got["description"]["value"] == alert.description
    assert got["location"] == {
        "type": "geo:json",
        "value": {"type": "Point", "coordinates": [135.8048, 34.6851]},
        "metadata": got["location"].get("metadata", {}),
    }


async def test_every_provisioning_block_of_the_platform_page_is_accepted(city: City) -> None:
    """What docs/platform.md tells the platform team to POST, the real agent takes (201)."""
    blocks = platform_blocks()
    assert len(blocks) >= 4
    for i, block in enumerate(blocks):
        apikey = fresh_apikey("docs")
        if "devices" in block:  # a device needs its group first
            city.agent.provision_group(apikey)
        path = "/iot/services" if "services" in block else "/iot/devices"
        status, body = city.agent.north("POST", path, as_provisioned(block, city, apikey))
        assert status == 201, (i, body)
