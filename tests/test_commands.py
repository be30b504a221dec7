"""The command path under hostile input (issue 10, section 1): size cap before parsing, bounded
depth and keys, text that is not valid Unicode, retained commands, a burst larger than the
queue, handler exceptions, bounded and rate-limited answers, declared argument schemas.

Against a real mosquitto where the uplink is involved; the router alone where only its
answer is at stake."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import replace

import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import loader as config_mod
from gateway.contract import Command
from gateway.errors import ConfigError
from gateway.model import Lane
from gateway.outbox.store import Outbox
from gateway.schema import ArgumentError, Field, Schema
from gateway.uplink import orion
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink
from tests.alert_setup import FakeRelay, config_text, parse, stack
from tests.test_uplink import BASE, running, wait_until

CMD, CMDEXE = "/key/gw1/cmd", "/json/key/gw1/cmdexe"


def _ok(args: object) -> asyncio.Future[str]:
    return asyncio.ensure_future(asyncio.sleep(0, "OK"))


def router(log, allowed=("ping", "reload"), **kw) -> CommandRouter:  # type: ignore[no-untyped-def]
    r = CommandRouter(allowed, log=log, **kw)
    r.register("ping", _ok)
    r.register("reload", _ok)
    return r


def answers(platform) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(m.payload) for m in platform.on(CMDEXE)]


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.max_inflight_messages_set(0)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    return client


async def test_hostile_messages_are_answered_and_the_uplink_lives_on(
    tmp_path, broker, platform, log
):
    """Lone surrogates killed the daemon (UnicodeEncodeError), 3,000 nested arrays killed it
    (RecursionError); bytes that are not UTF-8 and a huge name are answered too."""
    cfg = replace(BASE, port=broker.port, commands=("ping",))
    hostile = [
        b'{"\\ud800": 1}',
        b'{"ping": "\\udfff"}',
        b"[" * 3000 + b"]" * 3000,
        b"\xff\xfe{}",
        json.dumps({"x" * 3000: 1}).encode(),
        b'{"ping": {}}',
    ]
    async with Outbox.open(tmp_path / "o.db") as ob:
        up = Uplink(cfg, "gw1", ob, router(log, max_bytes=1 << 20), log=log)
        async with running(up):
            await wait_until(lambda: up.stats.connected)
            await asyncio.sleep(0.2)  # the subscription settles
            for payload in hostile:
                platform.publish(CMD, payload)
            await platform.wait(lambda ms: len(platform.on(CMDEXE)) >= len(hostile))
            assert up.stats.connected and up.stats.commands == len(hostile)
    got = answers(platform)
    assert "not valid Unicode" in got[0]["error"]
    # refused, but its command can be told: answered under it, so ping_status leaves PENDING
    assert "not valid Unicode" in got[1]["ping"]
    assert "nested deeper than 8" in got[2]["error"]
    assert "not UTF-8" in got[3]["error"]
    (name,) = got[4]
    assert len(name) == 64 and name.endswith("…")
    assert got[4][name].startswith("ERROR: unknown command") and len(got[4][name]) < 200
    assert got[5] == {"ping": "OK"}
    assert all(orion.is_safe(a) for a in got)


async def test_the_size_cap_refuses_before_parsing(log, captured_logs):
    """One 10 MB object with 800k keys blocked the event loop for 51 s: it is refused by its
    size before json sees it, and the log line is bounded."""
    big = b"{" + b",".join(b'"k%d":1' % i for i in range(800_000)) + b"}"
    assert len(big) > 9_000_000
    result = await router(log).handle(big)
    # refused unparsed, answered under the command its first bytes name (the agent sends one)
    assert result == {"k0": f"ERROR: command too large, {len(big)} bytes, limit 4096"}
    (line,) = [e for e in captured_logs if e["event"] == "command refused"]
    assert len(line["payload"]) <= 80 and line["size"] == len(big)


async def test_depth_and_key_count_are_bounded_inside_the_cap(log):
    r = router(log, max_bytes=1 << 20)
    deep = b'{"ping": ' + b"[" * 9 + b"]" * 9 + b"}"
    assert "nested deeper than 8" in (await r.handle(deep))["ping"]
    shallow = b'{"ping": ' + b"[" * 7 + b"]" * 7 + b"}"
    assert await r.handle(shallow) == {"ping": "OK"}
    many = json.dumps({"ping": {f"k{i}": i for i in range(100)}}).encode()
    assert "more than 64 keys" in (await r.handle(many))["ping"]
    # brackets inside strings are text, not nesting
    assert await r.handle(b'{"ping": "' + b"[" * 100 + b'"}') == {"ping": "OK"}


def test_command_max_bytes_is_configurable_with_path_qualified_problems():
    text = '[gateway]\nid = "gw"\n[uplink]\ncommand_max_bytes = {}\n'
    assert config_mod.parse(text.format(8192)).uplink.command_max_bytes == 8192
    assert config_mod.parse('[gateway]\nid = "gw"\n').uplink.command_max_bytes == 4096
    for bad, want in (('"big"', "expected an integer"), ("10", "64")):
        with pytest.raises(ConfigError) as err:
            config_mod.parse(text.format(bad))
        (problem,) = err.value.problems
        assert str(problem).startswith("uplink.command_max_bytes") and want in str(problem)


async def test_a_failing_handler_is_one_error_answer_and_one_log_line(log, captured_logs):
    async def broken(args: object) -> str:
        raise ZeroDivisionError("division by zero")

    async def broken_with_args(args: dict[str, object]) -> str:
        raise RuntimeError("bug")

    r = CommandRouter(("crash", "crash2"), log=structlog.get_logger())
    r.register("crash", broken)
    r.register("crash2", Command(Schema({"n": Field("integer")}, bare="n"), broken_with_args))
    result = await r.handle(b'{"crash": {}, "crash2": 3}')
    assert result == {
        "crash": "ERROR: crash failed: ZeroDivisionError",
        "crash2": "ERROR: crash2 failed: RuntimeError",
    }
    lines = [e for e in captured_logs if e["event"] == "command handler failed"]
    assert [e["command"] for e in lines] == ["crash", "crash2"]
    assert all("exc_info" not in e and "exception" not in e for e in captured_logs)
    assert r.failed == 2


async def test_an_unknown_command_lists_only_the_allowed_ones(log):
    r = router(log, allowed=("ping",))
    r.register("siren", _ok)
    result = await r.handle(b'{"fly": 1}')
    assert result == {"fly": "ERROR: unknown command fly, known: ping"}


async def test_answers_are_bounded_and_paid_from_the_rate_limit(tmp_path, broker, platform, log):
    """A 10 MB command name gave a 20 MB answer that bypassed max_payload_bytes and
    rate_limit."""
    cfg = replace(BASE, port=broker.port, max_payload_bytes=256, rate_limit=1)
    names = {f"{c}" * 60: 1 for c in "abcdefghijkl"}  # 12 unknown commands, long names
    async with Outbox.open(tmp_path / "o.db") as ob:
        up = Uplink(cfg, "gw1", ob, router(log), log=log)
        async with running(up):
            await wait_until(lambda: up.stats.connected)
            await asyncio.sleep(0.2)
            full = up.bucket.tokens
            platform.publish(CMD, json.dumps(names).encode())
            await platform.wait(lambda ms: len(platform.on(CMDEXE)) >= 1)
            # The answer's bytes came out of the same bucket as telemetry.
            assert up.bucket.tokens < full
    (message,) = platform.on(CMDEXE)
    assert len(message.payload) <= 256
    assert json.loads(message.payload) == {"error": "ERROR: answer larger than max_payload_bytes"}


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_retained_commands_are_ignored_logged_once_and_counted(tmp_path, broker, platform):
    """A retained `reload` caused 34 reloads in 20 s: it came back at every (re)connect."""
    cfg = replace(BASE, port=broker.port, commands=("ping", "reload"))
    reloads: list[object] = []

    async def reload(args: object) -> str:
        reloads.append(args)
        return "OK"

    pub = publisher(broker.port)
    try:
        pub.publish(CMD, b'{"reload": {}}', qos=1, retain=True).wait_for_publish(10)
        retained = 0
        with structlog.testing.capture_logs() as events:
            async with Outbox.open(tmp_path / "o.db") as ob:
                for _ in range(2):  # two sessions: the broker sends the retained one to each
                    r = CommandRouter(cfg.commands, {"ping": _ok, "reload": reload}, log=log_())
                    up = Uplink(cfg, "gw1", ob, r, log=structlog.get_logger())
                    async with running(up):
                        await wait_until(lambda up=up: up.stats.connected)
                        await asyncio.sleep(0.2)
                        seen = len(platform.on(CMDEXE))
                        platform.publish(CMD, b'{"ping": {}}')
                        await platform.wait(lambda ms, n=seen: len(platform.on(CMDEXE)) > n)
                        await wait_until(lambda up=up: up.stats.commands_retained == 1)
                    retained += up.stats.commands_retained
    finally:
        pub.publish(CMD, b"", qos=1, retain=True).wait_for_publish(10)  # clear it
        pub.loop_stop()
    assert reloads == []
    assert answers(platform) == [{"ping": "OK"}, {"ping": "OK"}]
    assert retained == 2
    ignored = [e for e in events if e["event"] == "retained command ignored"]
    assert len(ignored) == 2  # once per connect


def log_():  # type: ignore[no-untyped-def]
    return structlog.get_logger().bind(component="commands")


@pytest.mark.slow  # 5,000 messages through a real broker
async def test_a_burst_of_5000_pings_is_answered_or_refused_as_busy(tmp_path, broker, platform):
    """5,000 pings: 740 were never answered and 80 QueueFull tracebacks went to the log."""
    cfg = replace(BASE, port=broker.port, commands=("ping",))
    pub = publisher(broker.port)
    try:
        with structlog.testing.capture_logs() as events:
            async with Outbox.open(tmp_path / "o.db") as ob:
                up = Uplink(cfg, "gw1", ob, router(log_()), log=structlog.get_logger())
                async with running(up):
                    await wait_until(lambda: up.stats.connected)
                    await asyncio.sleep(0.2)
                    sent = threading.Thread(
                        target=lambda: [
                            pub.publish(CMD, b'{"ping": {}}', qos=1) for _ in range(5000)
                        ]
                    )
                    sent.start()
                    await asyncio.to_thread(sent.join)
                    await wait_until(
                        lambda: up.stats.commands + up.stats.commands_busy == 5000, timeout=60
                    )
                    await platform.wait(
                        lambda ms: (
                            _answered(platform) == (up.stats.commands, up.stats.commands_busy)
                        ),
                        timeout=60,
                    )
    finally:
        pub.loop_stop()
    assert up.stats.commands + up.stats.commands_busy == 5000
    assert _answered(platform) == (up.stats.commands, up.stats.commands_busy)
    if up.stats.commands_busy:
        assert any(e["event"] == "command queue full; refusing commands as busy" for e in events)


def _answered(platform) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(commands answered, busy refusals reported) as the platform saw them."""
    got = answers(platform)
    # The busy answer goes under the commands the refused messages were for (here all ping),
    # so the agent records it as ping_info instead of dropping it.
    busy = [BUSY.match(a.get("ping", "")) for a in got if a != {"ping": "OK"}]
    return (
        sum(1 for a in got if a == {"ping": "OK"}),
        sum(int(m.group(1)) if m else 10**9 for m in busy),  # anything else: never equal
    )


BUSY = re.compile(r"ERROR: busy, (\d+) command messages refused")


# -- declared schemas of the alert side's commands -------------------------------------------
@pytest.mark.parametrize(
    ("device", "why"),
    [
        ("evil/#", "a wildcard topic crashed the uplink at every start"),
        ("other-device/attrs/x", "published on another device's topic"),
        (123, "crashed with AttributeError"),
        ("traps-7/x", "not a key a configured device can have"),
        ("", "empty"),
    ],
)
async def test_alert_test_refuses_a_device_that_is_not_configured(tmp_path, device, why):
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    async with stack(cfg, tmp_path / "o.sqlite", {}) as (box, pipe, alerting):
        with pytest.raises(ArgumentError, match='"device" must be'):
            await alerting.commands["alert-test"]({"rule": "trap", "device": device})
        await pipe.flush()
        assert await box.peek(Lane.ALERT) == []  # nothing was raised


async def test_alert_test_takes_configured_devices_and_their_sub_devices(tmp_path):
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    async with stack(cfg, tmp_path / "o.sqlite", {}) as (_box, _pipe, alerting):
        for device in ("traps", "traps-7", "paddy-01"):
            reply = await alerting.commands["alert-test"]({"rule": "trap", "device": device})
            assert reply.startswith(f"OK trap:{device}:")


async def test_siren_runs_at_most_its_max_seconds(tmp_path):
    extra_siren = "max_seconds = 40\n"
    text = config_text(store=str(tmp_path / "o.sqlite")).replace(
        "[alerts.actions.siren]\n", "[alerts.actions.siren]\n" + extra_siren
    )
    relay = FakeRelay()
    async with stack(parse(text), tmp_path / "o.sqlite", {"relay-1": relay}) as (*_, alerting):
        with pytest.raises(ArgumentError, match=r"must be in \[0, 40\]"):
            await alerting.commands["siren"]({"seconds": 41})
        assert await alerting.commands["siren"]({"seconds": 40}) == "OK"


def test_an_action_longer_than_its_max_seconds_is_a_config_problem(tmp_path):
    text = config_text(store=str(tmp_path / "o.sqlite")).replace(
        "[alerts.actions.siren]\n", "[alerts.actions.siren]\nmax_seconds = 5\n"
    )
    text = text.replace("seconds = 30", "seconds = 60", 1)
    with pytest.raises(ConfigError, match=r"alerts\.actions\.siren\.seconds: longer than"):
        parse(text)
