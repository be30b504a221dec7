"""Plain telemetry through the real FIWARE IoT Agent JSON into the context broker: every
reading becomes one attribute update with its own TimeInstant, exactly once."""

from __future__ import annotations

from gateway.clock import iso
from gateway.outbox.store import Outbox
from tests.agent_setup import fresh_apikey, running_uplink, telemetry, until, uplink_config
from tests.iotagent import City


async def test_every_reading_lands_once_with_its_own_time(city: City, tmp_path, log) -> None:
    apikey = fresh_apikey()
    city.agent.provision_group(apikey)
    entity = city.agent.provision_device(
        "paddy-1",
        apikey,
        attributes=[{"object_id": "water_level", "name": "waterLevel", "type": "Number"}],
    )
    # 1 reading alone (a plain object), then 750 in one batch (arrays split by payload size).
    cfg = uplink_config(city, apikey, max_payload_bytes=16384)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        first = telemetry(outbox, "paddy-1", 1)
        await outbox.append(first)
        async with running_uplink(cfg, outbox, log) as uplink:
            await until(lambda: len(city.cb.updates_of(entity)) == 1)
            rest = telemetry(outbox, "paddy-1", 750, t0=1.9e9)
            await outbox.append(rest)
            await until(lambda: len(city.cb.updates_of(entity)) == 751)
            await until(lambda: uplink.outbox.rows == 0)
    updates = city.cb.updates_of(entity)
    assert len(updates) == 751, "every reading once, none twice"
    assert city.cb.refusals == []
    sent = {(r.value, r.ts) for r in first + rest}
    got = set()
    for u in updates:
        # a one-element array would have become an attribute named "0"
        assert set(u.attrs) == {"waterLevel", "TimeInstant"}, u.attrs
        meta = u.attrs["waterLevel"]["metadata"]["TimeInstant"]["value"]
        assert meta == u.time_instant()
        got.add((u.value("waterLevel"), u.time_instant()))
    assert got == {(v, iso(ts)) for v, ts in sent}
