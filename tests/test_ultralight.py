"""UltraLight 2.0 commands (gateway.uplink.ultralight): what the IoT Agent UL sends
(`<device>@<command>|<value>` or `|k=v|k=v`, iotagent-ul's createCommandPayload) is parsed,
hostile input refused as the JSON path refuses it, and every answer is one line
`<device>@<command>|<result>` its agent's parser reads (iotagent-ul's ulParser.result takes
the text between the first and second `|`)."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.contract import Command
from gateway.schema import Field, Schema
from gateway.uplink import orion
from gateway.uplink.commands import CommandRouter, Refused
from gateway.uplink.ultralight import FIELD_MAX, MAX_PARAMS, UltraLightCodec

UL = UltraLightCodec("gw1")
ANSWER = re.compile(r"gw1@[A-Za-z0-9_.:-]{1,64}\|[^|#]*")


def result(answer: bytes) -> str:
    """What iotagent-ul's ulParser.result reads as the result."""
    head, *fields = answer.decode().split("|")
    assert "@" in head
    return fields[0] if fields else ""


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (b"gw1@ping", {"ping": None}),
        (b"gw1@ping|", {"ping": ""}),
        (b"gw1@siren|30", {"siren": "30"}),
        (b"gw1@siren|seconds=30|flash=true", {"siren": {"seconds": "30", "flash": True}}),
        (b"gw1@relay|device=r1|state=false", {"relay": {"device": "r1", "state": False}}),
        ("gw1@note|水位".encode(), {"note": "水位"}),
    ],
)
def test_what_the_agent_sends_is_parsed(payload, want):
    assert UL.parse(payload, 4096) == want


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"gw1@ping|" + b"x" * 5000, "command too large, 5009 bytes, limit 4096"),
        (b"\xff\xfe", "not UTF-8"),
        (b"gw1@p\xed\xa0\x80ing", "not UTF-8"),  # an encoded lone surrogate
        (b'{"ping": {}}', "expected <device>@<command>|<value>"),
        (b"gw1ping|1", "expected <device>@<command>|<value>"),
        (b"gw1@|1", "a command name is"),
        (b"gw1@pi ng|1", "a command name is"),
        (b"gw1@" + b"p" * 65, "a command name is"),
        (b"gw2@ping|", "command for device gw2, this gateway is gw1"),
        (b"@ping|", "command for device none given"),
        (b"a/b#c@ping|", "command for device a_b_c"),
        (b"gw1@ping|a\nb", "control character U+000A"),
        (b"gw1@ping|a\x00", "control character U+0000"),
        (b"gw1@ping|" + b"|".join(b"k%d=1" % i for i in range(MAX_PARAMS + 1)), "too many"),
        (b"gw1@ping|" + b"x" * (FIELD_MAX + 1), "longer than 256"),
        (b"gw1@ping|a|b", "expected <key>=<value> fields"),
        (b"gw1@ping|a=1=2", "expected <key>=<value> fields"),
        (b"gw1@ping|=1", "a key is"),
        (b"gw1@ping|a=1|a=2", "key a given twice"),
    ],
)
def test_hostile_input_is_refused_with_its_reason(payload, why):
    with pytest.raises(Refused, match=re.escape(why)):
        UL.parse(payload, 4096)


def test_a_refused_message_names_its_command_when_it_can():
    assert UL.name_of(b"gw1@siren|seconds=abc") == "siren"
    assert UL.name_of(b"other@ping") == "ping"
    assert UL.name_of(b"gw1@ping|" + b"x" * 10_000) == "ping"
    assert UL.name_of(b'{"ping": {}}') is None
    assert UL.name_of(b"gw1@pi ng|1") is None
    assert UL.name_of(b"") is None


@given(st.text(max_size=300))
def test_every_answer_is_one_ultralight_line_orion_takes(text):
    (answer,) = UL.encode({"ping": text})
    assert ANSWER.fullmatch(answer.decode(errors="replace"))
    assert orion.is_safe(result(answer))


async def test_the_router_answers_ultralight_end_to_end(log):
    seen: list[object] = []

    async def siren(args: dict[str, object]) -> str:
        seen.append(args)
        return "siren on"

    async def broken(args: object) -> str:
        raise RuntimeError("x")

    schema = Schema({"seconds": Field("number", lo=0, hi=60, from_text=True)}, bare="seconds")
    r = CommandRouter(("ping", "siren", "broken"), log=log)
    r.register("ping", lambda args: asyncio.sleep(0, "OK"))
    r.register("siren", Command(schema, siren))
    r.register("broken", broken)
    r.register("reload", lambda args: asyncio.sleep(0, "OK"))
    got = [
        (await r.answer(p, 4096, UL))[0].decode()
        for p in (
            b"gw1@ping|",
            b"gw1@siren|seconds=12",
            b"gw1@siren|99",
            b"gw1@broken",
            b"gw1@reload",
            b"gw1@fly|1",
            b"junk",
        )
    ]
    assert seen == [{"seconds": 12.0}]
    assert got[:2] == ["gw1@ping|OK", "gw1@siren|OK: siren on"]
    assert orion.restore(got[2]) == 'gw1@siren|ERROR: "seconds" must be in [0, 60], got "99"'
    assert got[3] == "gw1@broken|ERROR: broken failed: RuntimeError"
    assert got[4] == "gw1@reload|ERROR: command reload is not allowed on this gateway"
    assert got[5] == "gw1@fly|ERROR: unknown command fly, known: broken, ping, siren"
    assert orion.restore(got[6]).startswith("gw1@error|ERROR: malformed command: expected <")
    assert all(ANSWER.fullmatch(a) and orion.is_safe(a) for a in got)


async def test_a_ul_answer_too_large_is_replaced_by_a_short_error(log):
    r = CommandRouter(("ping",), log=log)
    r.register("ping", lambda args: asyncio.sleep(0, "é" * 199))
    (answer,) = await r.answer(b"gw1@ping", 256, UL)
    assert answer == b"gw1@ping|ERROR: answer larger than max_payload_bytes"
