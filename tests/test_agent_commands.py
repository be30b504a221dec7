"""Commands round-trip through the real FIWARE IoT Agent JSON (issue 11, item 2): a client sets
a command attribute (what Orion forwards to the agent), the agent publishes it to the gateway,
the real Uplink and CommandRouter answer on cmdexe, and the agent stores the answer as
`<cmd>_info` with `<cmd>_status` OK. Every answer must be taken by a context broker that
refuses what Orion refuses (else the status stays PENDING for ever), and must say in its text
whether the command failed (the agent says OK whatever happened)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from gateway.contract import Command
from gateway.outbox.store import Outbox
from gateway.schema import Field, Schema
from gateway.uplink import orion
from gateway.uplink.client import COMMAND_QUEUE
from gateway.uplink.commands import CommandRouter
from tests.agent_setup import fresh_apikey, running_uplink, until, uplink_config
from tests.iotagent import City
from tests.mqtt_peer import Collector

COMMANDS = ["ping", "reload", "siren", "crash", "fly", "hold"]
ALLOWED = ("ping", "siren", "crash", "hold")


class Gateway:
    """The gateway device as a city provisions it, and a way to command it as Orion would."""

    def __init__(self, city: City, apikey: str) -> None:
        self.city, self.apikey, self.id = city, apikey, f"gw-{apikey}"
        city.agent.provision_group(apikey)
        self.entity = city.agent.provision_device(
            self.id, apikey, commands=COMMANDS, entity_type="Gateway"
        )

    def refusals(self) -> list[Any]:
        return [r for r in self.city.cb.refusals if self.entity in json.dumps(r.body)]

    def answered(self, name: str, since: int) -> dict[str, Any] | None:
        """The first update after `since` carrying `<name>_info`, as {status, info}."""
        for u in self.city.cb.updates_of(self.entity)[since:]:
            if f"{name}_info" in u.attrs:
                return {"status": u.value(f"{name}_status"), "info": u.value(f"{name}_info")}
        return None

    async def command(self, name: str, value: Any) -> dict[str, Any]:
        """Send `name` as Orion would and wait for its answer in the context broker."""
        since = len(self.city.cb.updates_of(self.entity))
        status = await asyncio.to_thread(
            self.city.agent.send_command, self.entity, "Gateway", name, value
        )
        assert status in (200, 204), status
        await until(lambda: self.answered(name, since) is not None or self.refusals())
        assert self.refusals() == [], "the context broker refused an answer"
        got = self.answered(name, since)
        assert got is not None
        return got


async def subscribed(up: Any) -> None:
    """Until the uplink is connected and its command subscription has settled (the agent
    publishes commands with QoS 0, not retained: one sent before is lost)."""
    await until(lambda: up.stats.connected)
    await asyncio.sleep(0.3)


def router(log: Any, **handlers: Callable[[Any], Any]) -> CommandRouter:
    async def pong(args: object) -> str:
        return "pong"

    async def crash(args: object) -> str:
        raise RuntimeError("the relay driver has a bug; (really)")

    async def siren(args: dict[str, object]) -> str:
        return f"siren on for {args['seconds']:g} s"

    async def reload(args: object) -> str:
        return "OK"

    r = CommandRouter(ALLOWED, log=log, max_bytes=256, timeout=120)
    r.register("ping", pong)
    r.register("crash", crash)
    r.register("reload", reload)
    schema = Schema({"seconds": Field("number", lo=0, hi=600, from_text=True)}, bare="seconds")
    r.register("siren", Command(schema, siren))
    for name, handler in handlers.items():
        r.register(name, handler)
    return r


async def test_answers_land_as_status_and_info_and_say_whether_it_failed(
    city: City, tmp_path, log
) -> None:
    gw = Gateway(city, fresh_apikey("cmd"))
    cfg = uplink_config(city, gw.apikey, commands=ALLOWED, command_max_bytes=256)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        async with running_uplink(cfg, outbox, log, gateway_id=gw.id, router=router(log)) as up:
            await subscribed(up)
            ping = await gw.command("ping", "")
            reload = await gw.command("reload", "")
            fly = await gw.command("fly", {"to": "moon"})
            crash = await gw.command("crash", "")
            siren = await gw.command("siren", {"seconds": 30})
            bad = await gw.command("siren", {"seconds": "loud<er>"})
            unknown_key = await gw.command("siren", {"minutes": 3})
            big = await gw.command("siren", "x" * 400)  # refused before parsing: too large
    assert ping == {"status": "OK", "info": "OK: pong"}
    assert reload["info"] == "ERROR: command reload is not allowed on this gateway"
    assert fly["info"] == "ERROR: unknown command fly, known: crash, ping, siren"
    assert crash["info"] == "ERROR: crash failed: RuntimeError"
    assert siren == {"status": "OK", "info": "OK: siren on for 30 s"}
    assert orion.restore(bad["info"]) == 'ERROR: "seconds" must be a number, got "loud<er>"'
    assert orion.restore(unknown_key["info"]) == "ERROR: unknown key(s) minutes; known: seconds"
    assert re.fullmatch(r"ERROR: command too large, \d+ bytes, limit 256", big["info"])
    # The agent says OK whatever happened; the text says which it was, Orion-safe.
    every = [ping, reload, fly, crash, siren, bad, unknown_key, big]
    assert all(a["status"] == "OK" and orion.is_safe(a["info"]) for a in every)
    assert [a["info"].split(":")[0] for a in every] == ["OK", "ERROR", "ERROR", "ERROR", "OK",
                                                         "ERROR", "ERROR", "ERROR"]  # fmt: skip


async def test_an_answer_under_no_command_is_dropped_by_the_agent(city: City) -> None:
    """`{"error": ...}` (a message refused before any command ran, whose command we cannot
    tell): the agent finds no command `error`, logs it and updates nothing. Hence answers go
    under the command's name whenever the message lets us tell it."""
    gw = Gateway(city, fresh_apikey("cmd"))
    before = len(city.cb.updates_of(gw.entity))
    hand = Collector(city.broker.port)
    try:
        hand.publish(f"/json/{gw.apikey}/{gw.id}/cmdexe", b'{"error": "ERROR: malformed"}')
        hand.publish(f"/json/{gw.apikey}/{gw.id}/cmdexe", b'{"ping": "OK: by hand"}')
        await until(lambda: gw.answered("ping", before) is not None)
    finally:
        hand.close()
    updates = city.cb.updates_of(gw.entity)[before:]
    assert all("error_info" not in u.attrs and "error_status" not in u.attrs for u in updates)
    assert gw.answered("ping", before) == {"status": "OK", "info": "OK: by hand"}
    assert "COMMANDS-002" in city.agent.log_tail(20000)


@pytest.mark.slow  # 105 commands through the agent's north API
async def test_busy_refusals_land_on_the_commands_they_were_for(city: City, tmp_path, log):
    """The command queue holds 100; with a command holding the router, more are refused as
    busy. The busy answer goes under the refused messages' command, so one `ping_info` update
    says so (a `{"error": ...}` answer would have been dropped by the agent). The agent
    forwards answers concurrently, so it need not be the entity's last value."""
    gw = Gateway(city, fresh_apikey("cmd"))
    release = asyncio.Event()

    async def hold(args: object) -> str:
        await release.wait()
        return "released"

    cfg = uplink_config(city, gw.apikey, commands=ALLOWED)
    r = router(log, hold=hold)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        async with running_uplink(cfg, outbox, log, gateway_id=gw.id, router=r) as up:
            await subscribed(up)
            since = len(city.cb.updates_of(gw.entity))
            send = city.agent.send_command
            await asyncio.to_thread(send, gw.entity, "Gateway", "hold", "")
            await until(lambda: up.stats.commands == 1)
            # Eight at a time: one by one, the agent's north API takes ~0.3 s a command.
            for _ in range(0, 104, 8):
                await asyncio.gather(
                    *(asyncio.to_thread(send, gw.entity, "Gateway", "ping", "") for _ in range(8))
                )
            # hold runs, 100 pings wait in the queue (client.COMMAND_QUEUE), 4 are refused
            await until(lambda: up.stats.commands_busy == 104 - COMMAND_QUEUE)
            busy = up.stats.commands_busy
            release.set()
            await until(lambda: up.stats.commands == 105 - busy)

            def last_ping() -> Any:
                infos = [u.value("ping_info") for u in city.cb.updates_of(gw.entity)[since:]]
                return [i for i in infos if i is not None]

            # The agent forwards answers concurrently: wait for all of them, in any order. Up
            # to 90 s: the agent (node) forwards ~100 answers to the context broker one HTTP
            # update each, and on a slow stretch of the CI machine 30 s ran out once with
            # every answer already published (the responder's count had reached 101).
            await until(lambda: len(last_ping()) == 104 - busy + 1, timeout=90.0)
    assert gw.refusals() == []
    infos = last_ping()
    assert infos.count("OK: pong") == 104 - busy
    (told,) = [i for i in infos if i.startswith("ERROR")]
    assert told == (
        f"ERROR: busy, {busy} command messages refused while the queue was full, send again"
    )
    assert gw.answered("hold", since) == {"status": "OK", "info": "OK: released"}
