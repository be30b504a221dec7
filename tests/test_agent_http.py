"""`uplink.transport = "http"` against the real FIWARE IoT Agent's south port: a row leaves the
outbox only when the agent answered 2xx (the Context Broker has the update); a request whose
content the platform refuses goes to the dead letters with the platform's reason while the rows
behind it arrive; an unknown apikey keeps the link down without dead-lettering anything; a 5xx
or no answer keeps the rows; TLS (mutual) with keep-alive: many batches, one handshake."""

from __future__ import annotations

import sqlite3
import ssl
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import iso
from gateway.demo.broker import free_port
from gateway.model import Reading
from gateway.outbox.store import Outbox
from tests import certs
from tests.agent_setup import fresh_apikey, running_uplink, telemetry, until, uplink_config
from tests.iotagent import City
from tests.relay import AnswerStub, Relay

WATER = [{"object_id": "water_level", "name": "waterLevel", "type": "Number"}]


def http_config(city: City, apikey: str, url: str, **changes: Any) -> Any:
    return uplink_config(city, apikey, transport="http", url=url, commands=(), **changes)


def agent_url(city: City) -> str:
    return f"http://127.0.0.1:{city.agent.http_port}/iot/json"


def dead_letters(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT seq, reason FROM dead_letter ORDER BY seq"))


def assert_landed_once(city: City, entity: str, sent: list[Reading]) -> None:
    updates = city.cb.updates_of(entity)
    assert len(updates) == len(sent), "every reading once, none twice"
    got = set()
    for u in updates:
        assert set(u.attrs) == {"waterLevel", "TimeInstant"}, u.attrs  # no "0" attribute
        assert u.attrs["waterLevel"]["metadata"]["TimeInstant"]["value"] == u.time_instant()
        got.add((u.value("waterLevel"), u.time_instant()))
    assert got == {(r.value, iso(r.ts)) for r in sent}


@pytest.mark.slow
async def test_rows_leave_the_outbox_only_when_the_agent_answered(city: City, tmp_path, log):
    apikey = fresh_apikey("h")
    city.agent.provision_group(apikey)
    entity = city.agent.provision_device("paddy-h1", apikey, attributes=WATER)
    port = free_port()  # nothing listens here yet: the agent is out of reach
    cfg = http_config(city, apikey, f"http://127.0.0.1:{port}/iot/json", max_payload_bytes=2048)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        first = telemetry(outbox, "paddy-h1", 120)
        await outbox.append(first)
        async with running_uplink(cfg, outbox, log) as uplink:
            await until(lambda: uplink.backoff.failures >= 3)
            assert outbox.rows == 120 and city.cb.updates_of(entity) == []
            async with Relay(city.agent.http_port, port=port) as relay:
                await until(lambda: outbox.rows == 0 and uplink.stats.acked_readings == 120)
                assert len(city.cb.updates_of(entity)) == 120
                # The agent takes the next one, but its answer is held: the row stays queued.
                relay.hold.clear()
                last = telemetry(outbox, "paddy-h1", 1, t0=1.9e9)
                await outbox.append(last)
                await until(lambda: len(city.cb.updates_of(entity)) == 121)
                assert outbox.rows == 1 and uplink.stats.acked_readings == 120
                relay.hold.set()
                await until(lambda: outbox.rows == 0)
            assert uplink.stats.dead_letters == 0
    assert_landed_once(city, entity, first + last)
    assert not any(entity in str(r.body) for r in city.cb.refusals)


async def test_refused_content_is_dead_lettered_with_the_reason_and_the_rest_arrives(
    city: City, tmp_path, log
):
    apikey = fresh_apikey("h")
    city.agent.provision_group(apikey)
    good = city.agent.provision_device("paddy-h2", apikey, attributes=WATER)
    # Provisioned by the city under an entity id Orion refuses: whatever the gateway sends
    # for this device, the platform answers 400.
    city.agent.provision_device("paddy-h3", apikey, entity="urn:ngsi-ld:Thing:paddy(3)")
    cfg = http_config(city, apikey, agent_url(city), batch_max_readings=10)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        bad = telemetry(outbox, "paddy-h3", 5)
        rows = telemetry(outbox, "paddy-h2", 50)
        await outbox.append(bad + rows)  # the refused rows first: the ones behind must go on
        async with running_uplink(cfg, outbox, log) as uplink:
            # rows: the outbox's count; the stats follow when the ack's await returns
            await until(lambda: outbox.rows == 0 and uplink.stats.acked_readings == 50)
            assert uplink.stats.dead_letters == 5
    assert_landed_once(city, good, rows)
    letters = dead_letters(tmp_path / "o.sqlite")
    assert [seq for seq, _ in letters] == [r.seq for r in bad]
    reason = letters[0][1]
    assert reason.startswith("refused by the platform: HTTP 400 ENTITY_GENERIC_ERROR"), reason
    assert "paddy(3)" in reason and len(reason) <= 230
    assert any("paddy(3)" in str(r.body) for r in city.cb.refusals)


@pytest.mark.slow
async def test_an_unknown_apikey_keeps_the_link_down_without_dead_letters(
    city: City, tmp_path, log, captured_logs
):
    apikey = fresh_apikey("h")  # no service group yet
    cfg = http_config(city, apikey, agent_url(city))
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        rows = telemetry(outbox, "paddy-h4", 20)
        await outbox.append(rows)
        async with running_uplink(cfg, outbox, log) as uplink:
            await until(lambda: uplink.backoff.failures >= 4)
            assert outbox.rows == 20 and not uplink.stats.connected
            assert uplink.stats.dead_letters == 0 and outbox.stats().dead_letters == 0
            (down,) = [e for e in captured_logs if e["event"] == "uplink down"]
            assert "HTTP 404 DEVICE_GROUP_NOT_FOUND" in down["reason"], down
            assert "uplink.apikey" in down["reason"]
            # The city provisions the group: the link comes up and everything goes.
            city.agent.provision_group(apikey)
            entity = city.agent.provision_device("paddy-h4", apikey, attributes=WATER)
            await until(lambda: outbox.rows == 0)
    assert_landed_once(city, entity, rows)
    assert len([e for e in captured_logs if e["event"] == "uplink down"]) == 1
    assert len([e for e in captured_logs if e["event"] == "uplink recovered"]) == 1


@pytest.mark.slow
async def test_a_5xx_or_no_answer_keeps_the_rows_and_sends_them_again(city: City, tmp_path, log):
    # Answers: 503, no answer (timeout), then 200 for good.
    async with AnswerStub([503, None, 200]) as stub:
        cfg = http_config(city, "k", f"http://127.0.0.1:{stub.port}/iot/json", request_timeout=1.0)
        async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
            rows = telemetry(outbox, "paddy-h5", 3)
            await outbox.append(rows)
            async with running_uplink(cfg, outbox, log) as uplink:
                await until(lambda: len(stub.posts()) >= 2)
                assert outbox.rows == 3
                await until(lambda: outbox.rows == 0)
                assert uplink.stats.dead_letters == 0
    posts = stub.posts()
    assert len(posts) == 3 and posts[0] == posts[1] == posts[2], "the same request, again"
    targets = {t for t, _ in stub.requests if t.startswith("POST")}
    assert targets == {"POST /iot/json?k=k&i=paddy-h5 HTTP/1.1"}


def _tls(tmp_path: Path) -> tuple[ssl.SSLContext, dict[str, str]]:
    """A server context asking for a client certificate, and the gateway's [uplink.tls]."""
    ca, ca_key, ca_path = certs.make_ca(tmp_path, "ca")
    crt, key = certs.issue(tmp_path, "iota", ca, ca_key, server=True)
    client_crt, client_key = certs.issue(tmp_path, "gw", ca, ca_key, server=False)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_path)
    server.load_cert_chain(crt, key)
    server.verify_mode = ssl.CERT_REQUIRED
    return server, {"ca": ca_path, "cert": client_crt, "key": client_key}


@pytest.mark.slow
async def test_mutual_tls_keeps_one_connection_for_many_batches(city: City, tmp_path, log):
    from gateway.config.loader import TlsConfig

    apikey = fresh_apikey("h")
    city.agent.provision_group(apikey)
    entity = city.agent.provision_device("paddy-h6", apikey, attributes=WATER)
    server, files = _tls(tmp_path)
    async with Relay(city.agent.http_port, tls=server) as relay:
        cfg = http_config(
            city,
            apikey,
            f"https://127.0.0.1:{relay.port}/iot/json",
            tls=TlsConfig(**files),
            batch_max_readings=10,
            inflight=1,  # a backlog leases inflight x batch rows at once: keep 30 requests
        )
        async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
            rows = telemetry(outbox, "paddy-h6", 300)
            await outbox.append(rows)
            async with running_uplink(cfg, outbox, log) as uplink:
                await until(lambda: outbox.rows == 0)
                assert uplink.stats.published_messages >= 30
                # The rate limit pays what the requests really write: all the relay got
                # but the connect probe.
                probe = f"HEAD /iot/json HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\n"
                probe += "User-Agent: field-gateway\r\n\r\n"
                assert relay.sent == uplink.stats.wire_bytes + len(probe)
        assert relay.connections == 1, "one TLS handshake for 30 batches and the probe"
    assert_landed_once(city, entity, rows)


@pytest.mark.slow
async def test_a_server_the_ca_does_not_vouch_for_is_refused(city: City, tmp_path, log):
    from gateway.config.loader import TlsConfig

    server, files = _tls(tmp_path)
    other, _, other_path = certs.make_ca(tmp_path, "other")
    async with Relay(city.agent.http_port, tls=server) as relay:
        cfg = http_config(
            city,
            "k",
            f"https://127.0.0.1:{relay.port}/iot/json",
            tls=TlsConfig(ca=other_path, cert=files["cert"], key=files["key"]),
        )
        async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
            await outbox.append(telemetry(outbox, "paddy-h7", 2))
            async with running_uplink(cfg, outbox, log) as uplink:
                await until(lambda: uplink.health.down_reason is not None)
                assert "TLS verification failed" in uplink.health.down_reason
                assert outbox.rows == 2 and relay.connections == 0
