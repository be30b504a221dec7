"""The uplink against a real mosquitto: PUBACK-driven acks, outages, alerts first, commands,
TLS, credentials, payload limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
from dataclasses import replace

import pytest
import structlog

from gateway.config.loader import TlsConfig, UplinkConfig
from gateway.contract import Command
from gateway.demo.broker import BrokerTls, LocalBroker
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from gateway.schema import Field, Schema
from gateway.uplink import orion
from gateway.uplink.commands import CommandRouter
from gateway.uplink.ratelimit import TokenBucket
from gateway.uplink.session import Uplink
from gateway.uplink.window import Batch, InflightWindow
from tests.certs import issue, make_ca
from tests.mqtt_peer import Collector

BASE = UplinkConfig(
    host="127.0.0.1",
    client_id="gw-test",
    format="json",
    apikey="key",
    status_topic="gateway/gw1/status",
    batch_window=0.0,
    batch_max_readings=200,
    reconnect_min=0.05,
    reconnect_max=0.2,
    commands=("ping", "reload"),
    resume_delay=0.0,  # no resume hold here, but in the block at the end that tests it
)


def readings(outbox: Outbox, n: int, devices=("d1", "d2", "d3"), lane=Lane.TELEMETRY):
    return [
        Reading(
            seq, devices[i % len(devices)], "water_level", float(i), "cm", 1.8e9 + i, True, lane
        )
        for i, seq in enumerate(outbox.allocate(n))
    ]


def seqs_from_json(collector: Collector) -> list[int]:
    out = []
    for m in collector.messages:
        if m.topic.startswith("gateway/gw1/") and not m.topic.endswith("/status"):
            out += [item["seq"] for item in json.loads(m.payload)]
    return out


@contextlib.asynccontextmanager
async def running(uplink: Uplink):
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        await uplink.stop(2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate, timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def make_uplink(cfg: UplinkConfig, outbox: Outbox, log, router: CommandRouter | None = None):
    router = router or CommandRouter(cfg.commands, log=log)
    return Uplink(cfg, "gw1", outbox, router, log=log)


async def test_publish_then_puback_then_rows_gone(tmp_path, broker, platform, log):
    cfg = replace(BASE, port=broker.port)
    async with Outbox.open(tmp_path / "o.db") as ob:
        await ob.append(readings(ob, 1000))
        async with running(make_uplink(cfg, ob, log)) as up:
            await wait_until(lambda: ob.rows == 0 and up.stats.acked_readings == 1000)
        await platform.wait(lambda ms: len(seqs_from_json(platform)) >= 1000)
    assert sorted(seqs_from_json(platform)) == list(range(1, 1001))
    status = platform.on("gateway/gw1/status")
    assert status[0].payload == b"online"
    assert status[-1].payload == b"offline"  # graceful stop announces itself


async def test_a_backlog_drains_in_large_messages_per_device(tmp_path, broker, platform, log):
    # 600 waiting rows of 3 devices, batches of 50: a drain leases up to `inflight` batches at
    # once, so each device's share goes in one message of ~67 rows, not 12 slivers of ~17.
    cfg = replace(BASE, port=broker.port, inflight=4, batch_max_readings=50)
    async with Outbox.open(tmp_path / "o.db") as ob:
        await ob.append(readings(ob, 600))
        async with running(make_uplink(cfg, ob, log)) as up:
            await wait_until(lambda: ob.rows == 0)
        await platform.wait(lambda ms: len(seqs_from_json(platform)) >= 600)
    assert sorted(seqs_from_json(platform)) == list(range(1, 601))
    sizes = [
        len(json.loads(m.payload)) for m in platform.messages if m.topic.startswith("gateway/gw1/d")
    ]
    assert up.stats.published_messages == len(sizes) == 9  # 3 leases of 200 x 3 devices
    assert min(sizes) >= 66


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_outage_keeps_readings_and_delivers_all_in_order(tmp_path, broker, platform, log):
    cfg = replace(BASE, port=broker.port, inflight=4, batch_max_readings=50)
    async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
        await ob.append(readings(ob, 300))
        await wait_until(lambda: ob.rows == 0)
        platform.close()
        broker.stop()
        await wait_until(lambda: not up.stats.connected)
        for _ in range(10):
            await ob.append(readings(ob, 100))
        await asyncio.sleep(0.3)
        assert await ob.count() == 1000  # nothing lost, nothing acked while down
        broker.start()
        collector = Collector(broker.port)
        await wait_until(lambda: ob.rows == 0)
        await collector.wait(lambda ms: len(set(seqs_from_json(collector))) >= 1000)
        got = seqs_from_json(collector)
        collector.close()
    assert set(got) == set(range(301, 1301))
    # Per-device order (the device as its topic names it): first sightings increase.
    per_device: dict[str, list[int]] = {}
    for m in collector.messages:
        if m.topic.startswith("gateway/gw1/d"):
            seen = per_device.setdefault(m.topic, [])
            seen += [i["seq"] for i in json.loads(m.payload) if i["seq"] not in seen]
    assert sorted(per_device) == ["gateway/gw1/d1", "gateway/gw1/d2", "gateway/gw1/d3"]
    for seen in per_device.values():
        assert seen == sorted(seen)
    assert len(got) - len(set(got)) <= cfg.inflight * cfg.batch_max_readings


async def test_alert_jumps_the_batch_window(tmp_path, broker, platform, log):
    cfg = replace(BASE, port=broker.port, batch_window=3600.0, batch_max_readings=10_000)
    async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
        await wait_until(lambda: up.stats.connected)
        await ob.append(readings(ob, 50))
        await ob.append(readings(ob, 1, devices=("trap-7",), lane=Lane.ALERT))
        await platform.wait(lambda ms: any(m.topic == "gateway/gw1/trap-7" for m in ms))
        await wait_until(lambda: ob.stats().by_lane["alert"] == 0)
        assert ob.stats().by_lane["telemetry"] == 50  # still inside its batch window
        assert not any(m.topic == "gateway/gw1/d1" for m in platform.messages)


async def test_alert_wakes_a_link_waiting_in_backoff(tmp_path, log):
    broker = LocalBroker(tmp_path / "b")
    cfg = replace(BASE, port=broker.port, reconnect_min=30.0, reconnect_max=60.0)
    async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
        await wait_until(lambda: up.health.down_reason is not None)
        broker.start()
        try:
            await ob.append(readings(ob, 1, devices=("trap-1",), lane=Lane.ALERT))
            # Without the wake the next attempt would come 30 s later.
            await wait_until(lambda: ob.rows == 0, timeout=10)
            assert up.stats.connects == 1
        finally:
            broker.stop()


async def test_payload_never_exceeds_max_bytes(tmp_path, broker, platform, log):
    cfg = replace(BASE, port=broker.port, format="fiware-json", max_payload_bytes=512)
    async with Outbox.open(tmp_path / "o.db") as ob:
        await ob.append(readings(ob, 600, devices=("d1",)))
        async with running(make_uplink(cfg, ob, log)):
            await wait_until(lambda: ob.rows == 0)
        await platform.wait(
            lambda ms: (
                sum(
                    len(json.loads(m.payload)) if m.payload.startswith(b"[") else 1
                    for m in ms
                    if m.topic == "/json/key/d1/attrs"
                )
                >= 600
            )
        )
    sizes = [len(m.payload) for m in platform.on("/json/key/d1/attrs")]
    assert max(sizes) <= 512 and len(sizes) > 1


async def test_commands_answered_on_cmdexe(tmp_path, broker, platform, log):
    cfg = replace(BASE, port=broker.port, commands=("ping",))
    router = CommandRouter(cfg.commands, log=log)
    router.register("ping", lambda args: asyncio.sleep(0, "OK"))
    router.register("reload", lambda args: asyncio.sleep(0, "OK"))
    async with Outbox.open(tmp_path / "o.db") as ob:
        async with running(make_uplink(cfg, ob, log, router)) as up:
            await wait_until(lambda: up.stats.connected)
            await asyncio.sleep(0.2)  # the subscription settles
            for payload in (b'{"ping": {}}', b"{not json", b'{"reload": {}}', b'{"fly": 1}', b"[]"):
                platform.publish("/key/gw1/cmd", payload)
            await platform.wait(lambda ms: len([m for m in ms if m.topic.endswith("cmdexe")]) >= 5)
    answers = [json.loads(m.payload) for m in platform.on("/json/key/gw1/cmdexe")]
    assert answers[0] == {"ping": "OK"}
    assert answers[1]["error"].startswith("ERROR: malformed command")
    assert answers[2] == {"reload": "ERROR: command reload is not allowed on this gateway"}
    assert answers[3]["fly"].startswith("ERROR: unknown command fly, known: ping")
    assert answers[4]["error"].startswith("ERROR: malformed command")


UL_ANSWER = re.compile(r"gw1@[A-Za-z0-9_.:-]{1,64}\|[^|#]*")


async def test_ultralight_commands_are_answered_in_ultralight_only(tmp_path, broker, platform, log):
    """In fiware-ul the agent sends `<device>@<command>|<args>`: it was refused as malformed
    JSON and answered with JSON on the UL cmdexe topic, which stops a UL agent's MQTT input.
    Also the busy answer: one per refused burst, in UltraLight, under the command's name."""
    cfg = replace(BASE, port=broker.port, format="fiware-ul", commands=("ping", "siren", "hold"))
    got: list[object] = []
    release = asyncio.Event()

    async def siren(args: dict[str, object]) -> str:
        got.append(args)
        return "OK"

    async def hold(args: object) -> str:
        await release.wait()
        return "released"

    router = CommandRouter(cfg.commands, log=log)
    router.register("ping", lambda args: asyncio.sleep(0, "pong"))
    router.register("hold", hold)
    schema = Schema(
        {"seconds": Field("number", lo=0, hi=600, from_text=True), "flash": Field("boolean")},
        bare="seconds",
    )
    router.register("siren", Command(schema, siren))
    sent = [
        b"gw1@ping|",
        b"gw1@siren|seconds=5|flash=true",
        b"gw1@siren|45",
        b"gw1@siren|seconds=abc",
        b'{"ping": {}}',
        b"other@ping|",
        b"gw1@fly|1",
        b"gw1@ping|a|b",
        b"gw1@ping|x\x00y",
        b"gw1@siren|seconds=<script>;('x')",
    ]
    cmdexe = "/ul/key/gw1/cmdexe"
    async with Outbox.open(tmp_path / "o.db") as ob:
        async with running(make_uplink(cfg, ob, log, router)) as up:
            await wait_until(lambda: up.stats.connected)
            await asyncio.sleep(0.2)  # the subscription settles
            for payload in sent:
                platform.publish("/key/gw1/cmd", payload)
            await platform.wait(lambda ms: len(platform.on(cmdexe)) >= len(sent))
            # A burst while a command holds the queue: 100 wait, the rest are refused as busy.
            platform.publish("/key/gw1/cmd", b"gw1@hold|")
            for _ in range(110):
                platform.publish("/key/gw1/cmd", b"gw1@ping|")
            await wait_until(lambda: up.stats.commands_busy > 0)
            await asyncio.sleep(0.3)
            release.set()
            busy = up.stats.commands_busy
            await platform.wait(lambda ms: len(platform.on(cmdexe)) >= len(sent) + (111 - busy) + 1)
    answers = [m.payload.decode() for m in platform.on(cmdexe)]
    assert not [m for m in platform.messages if "cmdexe" in m.topic and m.topic != cmdexe]
    assert all(UL_ANSWER.fullmatch(a) and orion.is_safe(a) for a in answers), answers
    first = answers[: len(sent)]
    assert first[:3] == ["gw1@ping|OK: pong", "gw1@siren|OK", "gw1@siren|OK"]
    assert got == [{"seconds": 5.0, "flash": True}, {"seconds": 45.0}]
    # Read back through the one rule (fullwidth forms -> ASCII): what the operator reads.
    readable = [orion.restore(a) for a in first]
    assert readable[3].startswith('gw1@siren|ERROR: "seconds" must be a number')
    assert readable[4].startswith("gw1@error|ERROR: malformed command: expected <device>@")
    assert first[5] == "gw1@ping|ERROR: command for device other, this gateway is gw1"
    assert first[6] == "gw1@fly|ERROR: unknown command fly, known: hold, ping, siren"
    assert readable[7] == "gw1@ping|ERROR: malformed command: expected <key>=<value> fields"
    assert first[8] == "gw1@ping|ERROR: malformed command: control character U+0000"
    assert readable[9].startswith('gw1@siren|ERROR: "seconds" must be a number, got "<script>;')
    rest = answers[len(sent) :]
    assert rest.count("gw1@hold|OK: released") == 1
    assert rest.count("gw1@ping|OK: pong") == 111 - 1 - busy
    (told,) = [a for a in rest if "busy" in a]
    assert told.startswith(f"gw1@ping|ERROR: busy, {busy} command messages refused")


def test_token_bucket_spends_at_the_configured_rate():
    async def main() -> float:
        bucket = TokenBucket(rate=10_000, burst=2_000)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(5):
            await bucket.take(1_000)
        return loop.time() - start

    # 5000 B with a 2000 B burst at 10 kB/s needs at least 0.3 s of refill.
    assert asyncio.run(main()) >= 0.29


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key, ca_file = make_ca(d, "field-ca")
    other, _, other_file = make_ca(d, "other-ca")
    server = issue(d, "broker", ca, ca_key, server=True)
    client = issue(d, "gw1", ca, ca_key, server=False)
    return {"ca": ca_file, "other_ca": other_file, "server": server, "client": client}


async def test_tls_with_ca_and_wrong_ca_refused(tmp_path, pki, log):
    tls = BrokerTls(pki["ca"], *pki["server"])
    with LocalBroker(tmp_path / "b", tls=tls) as broker:
        good = replace(BASE, port=broker.port, tls=TlsConfig(ca=pki["ca"]))
        async with Outbox.open(tmp_path / "o.db") as ob:
            await ob.append(readings(ob, 10))
            async with running(make_uplink(good, ob, log)):
                await wait_until(lambda: ob.rows == 0)
            bad = replace(good, tls=TlsConfig(ca=pki["other_ca"]))
            await ob.append(readings(ob, 5))
            with structlog.testing.capture_logs() as events:
                up = make_uplink(bad, ob, structlog.get_logger())
                async with running(up):
                    await wait_until(lambda: up.health.down_reason is not None)
            assert await ob.count() == 5  # nothing sent, nothing lost
    down = [e for e in events if e["event"] == "uplink down"]
    assert down and "TLS verification failed" in down[0]["reason"]
    assert "permanent" in down[0]["reason"]


async def test_mutual_tls_and_password_file(tmp_path, pki, log):
    tls = BrokerTls(pki["ca"], *pki["server"], require_certificate=True)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gw1", "s3cret"], check=True)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    with LocalBroker(tmp_path / "b", tls=tls, password_file=str(passwd)) as broker:
        cfg = replace(
            BASE,
            port=broker.port,
            tls=TlsConfig(ca=pki["ca"], cert=pki["client"][0], key=pki["client"][1]),
            username="gw1",
            password_file=str(secret),
        )
        async with Outbox.open(tmp_path / "o.db") as ob:
            await ob.append(readings(ob, 10))
            async with running(make_uplink(cfg, ob, log)):
                await wait_until(lambda: ob.rows == 0)
            secret.write_text("wrong\n")
            await ob.append(readings(ob, 3))
            with structlog.testing.capture_logs() as events:
                up = make_uplink(cfg, ob, structlog.get_logger())
                async with running(up):
                    await wait_until(lambda: up.health.down_reason is not None)
            assert await ob.count() == 3
    reason = next(e for e in events if e["event"] == "uplink down")["reason"]
    assert "refused" in reason and "s3cret" not in reason and "wrong" not in reason


async def test_a_reading_too_large_to_send_is_dropped_not_a_poison_pill(
    tmp_path, broker, platform, log
):
    cfg = replace(BASE, port=broker.port, max_payload_bytes=300)
    async with Outbox.open(tmp_path / "o.db") as ob:
        s = list(ob.allocate(3))
        await ob.append(
            [
                Reading(s[0], "d1", "note", "x" * 1000, "", 1.8e9),
                Reading(s[1], "d1", "water_level", 4.2, "cm", 1.8e9 + 1),
                Reading(s[2], "d2", "water_level", 4.3, "cm", 1.8e9 + 1),
            ]
        )
        async with running(make_uplink(cfg, ob, log)) as up:
            await wait_until(lambda: ob.rows == 0)
            assert up.stats.oversized == 1
        await platform.wait(lambda ms: len(seqs_from_json(platform)) >= 2)
    assert sorted(seqs_from_json(platform)) == [s[1], s[2]]


def test_window_acks_a_batch_only_when_sealed_and_every_message_acknowledged():
    rows = [Reading(i, "d1", "water_level", float(i), "cm", 1.8e9 + i, True) for i in (1, 2)]
    window = InflightWindow()
    batch = Batch(rows)
    window.add(batch, 10)
    assert window.puback(10)  # the first message's PUBACK arrives before the second is sent
    assert window.take_done() == []  # (a rate-limited batch is still being published)
    window.add(batch, 11)
    window.seal(batch)
    assert window.take_done() == [] and len(window) == 1
    assert not window.puback(99)  # not ours (the status topic)
    assert window.puback(11)
    assert window.take_done() == rows and window.take_done() == []
    qos0 = Batch(rows[:1])
    window.seal(qos0)  # nothing to wait for
    assert window.take_done() == rows[:1]


def test_window_hands_finished_batches_out_whole_and_at_most_limit_rows_at_a_time():
    """A delete covers at most one lease (a full disk's reserve holds the WAL of one): the
    window hands out whole finished batches up to `limit` rows, at least one, in order."""
    window = InflightWindow()
    batches = [
        Batch([Reading(s, "d1", "q", 1.0, "u", 1.8e9, True) for s in range(start, start + n)])
        for start, n in ((1, 3), (4, 3), (7, 5), (12, 1))
    ]
    for b in batches:
        window.seal(b)
    seqs = [[r.seq for r in window.take_done(4)] for _ in range(4)]
    assert seqs == [[1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11], [12]]  # 5 > 4 still goes: alone
    assert window.take_done(4) == []
    for b in batches:
        window.seal(b)
    assert [r.seq for r in window.take_done(6)] == [1, 2, 3, 4, 5, 6]
    assert [r.seq for r in window.take_done()] == list(range(7, 13))  # no limit: the rest


# -- resume hold (gateway.uplink.resume): a plain mosquitto restart ----------------------------
# The broker we reconnect to lost our session (CONNACK session-present 0): the backlog, alerts
# too, waits resume_delay for the platform's agent to re-subscribe. These check the trigger and
# the hold itself; tests/test_agent_restart.py shows the loss it prevents with the real agent.


def data_messages(collector: Collector) -> list[int]:
    return seqs_from_json(collector)


@pytest.mark.slow  # a broker restart and a 2 s hold
async def test_a_restarted_broker_holds_the_backlog_and_alerts_for_resume_delay(
    tmp_path, broker, captured_logs, log
):
    cfg = replace(BASE, port=broker.port, resume_delay=2.0)
    async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
        await ob.append(readings(ob, 10))
        await wait_until(lambda: ob.rows == 0)
        assert up.stats.resume_holds == 0  # the first connect of a fresh uplink does not hold
        broker.stop()
        await wait_until(lambda: not up.stats.connected)
        backlog = readings(ob, 30)
        await ob.append(backlog)
        broker.start()  # without persistence: our session is gone
        collector = Collector(broker.port)
        try:
            await wait_until(lambda: up.stats.holding_until is not None)
            published = up.stats.published_messages
            assert up.stats.resume_holds == 1 and up.stats.connected
            alert = readings(ob, 1, devices=("trap-7",), lane=Lane.ALERT)
            await ob.append(alert)
            checked = 0
            while up.resume.holding:  # nothing leaves while the hold lasts, alerts neither
                assert up.stats.published_messages == published
                assert data_messages(collector) == []
                checked += 1
                await asyncio.sleep(0.05)
            assert checked > 0
            await wait_until(lambda: ob.rows == 0)
            await collector.wait(lambda ms: len(data_messages(collector)) >= 31)
            got = data_messages(collector)
        finally:
            collector.close()
    assert set(got) == {r.seq for r in backlog + alert}
    assert up.stats.holding_until is None
    events = [e["event"] for e in captured_logs]
    (begin,) = [e for e in captured_logs if e["event"].startswith("uplink holding its backlog")]
    assert begin["resume_delay_s"] == 2.0 and begin["queued"] == len(backlog)
    assert events.index(begin["event"]) < events.index("uplink hold over; draining")


@pytest.mark.slow  # broker restarts
async def test_a_broker_that_kept_our_session_does_not_hold(tmp_path, log):
    # With persistence the broker still has our session after its restart (session-present
    # 1): no hold. (The agent's own subscription is gone all the same: the notes say so.)
    with LocalBroker(tmp_path / "b", persistence=True) as broker:
        cfg = replace(BASE, port=broker.port, resume_delay=3600.0)
        async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
            await wait_until(lambda: up.stats.connected)
            broker.stop()
            await wait_until(lambda: not up.stats.connected)
            await ob.append(readings(ob, 5))
            broker.start()
            await wait_until(lambda: ob.rows == 0)
            assert up.stats.connects == 2 and up.stats.resume_holds == 0


async def test_a_broker_that_lost_our_session_holds_after_failed_attempts_too(tmp_path, log):
    # The first connect after failed attempts: the broker was down, it has just come back.
    broker = LocalBroker(tmp_path / "b")
    cfg = replace(BASE, port=broker.port, resume_delay=3600.0)
    async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
        await wait_until(lambda: up.health.down_reason is not None)
        await ob.append(readings(ob, 3))
        broker.start()
        try:
            await wait_until(lambda: up.stats.holding_until is not None)
            assert up.stats.connects == 1 and up.stats.resume_holds == 1
            assert up.stats.published_messages == 0 and ob.rows == 3
        finally:
            broker.stop()
