"""UltraLight 2.0 commands (format `fiware-ul`): the codec the command router uses.

The IoT Agent UL sends `<device>@<command>|<value>` or `<device>@<command>|<k>=<v>|<k>=<v>`
on `/<apikey>/<device>/cmd` and expects `<device>@<command>|<result>` on
`/ul/<apikey>/<device>/cmdexe` (iotagent-ul's ulParser: `command` and `result`). Its parser
takes the result as the text between the first and the second `|`, and throws on an answer
without `@` before the first `|` (a JSON answer stops its MQTT input): so an answer here is
always one line of that form, its result Orion-safe and free of `|` and `#` (their fullwidth
forms, gateway.uplink.orion), and a message refused before any command ran is answered under
the command it names, else under `error` (`<device>@error|ERROR: ...`; the agent knows no
such command and only logs it).

Hostile input is refused as the JSON path refuses it (gateway.uplink.commands.Refused): size
before decoding, UTF-8, no control characters, at most MAX_PARAMS fields of at most FIELD_MAX
characters, device and command names of NAME's charset, the device this gateway is, each
`k=v` with one `=` and a distinct key. Values are text (UltraLight is untyped); `true` and
`false` become booleans, numbers stay text (a schema's `from_text` reads them).
Pure: no I/O, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.uplink import orion
from gateway.uplink.commands import NAME, Refused, text_of

MAX_PARAMS = 16  # `|`-separated fields after `<device>@<command>`
FIELD_MAX = 256  # characters of one field
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEAD = re.compile(rb"[^@|]{1,64}@([A-Za-z0-9_.:-]{1,64})(?:\||$)")


class UltraLightCodec:
    """Commands for the gateway device `device` in UltraLight 2.0."""

    def __init__(self, device: str) -> None:
        self.device = device

    def parse(self, payload: bytes, max_bytes: int) -> dict[str, Any]:
        text = text_of(payload, max_bytes)
        bad = _CONTROL.search(text)
        if bad:
            raise Refused(f"malformed command: control character U+{ord(bad.group()):04X}")
        head, *fields = text.split("|")
        device, at, name = head.partition("@")
        if not at:
            raise Refused("malformed command: expected <device>@<command>|<value>")
        if not NAME.fullmatch(name):
            raise Refused("malformed command: a command name is 1..64 of A-Z a-z 0-9 _ . : -")
        if device != self.device:
            shown = clip_name(device) or "none given"
            raise Refused(f"command for device {shown}, this gateway is {self.device}")
        if len(fields) > MAX_PARAMS:
            raise Refused(f"too many fields, {len(fields)}, limit {MAX_PARAMS}")
        if any(len(f) > FIELD_MAX for f in fields):
            raise Refused(f"a field longer than {FIELD_MAX} characters")
        return {name: _arguments(fields)}

    def name_of(self, payload: bytes) -> str | None:
        found = _HEAD.match(payload[:256])
        return found.group(1).decode() if found else None

    def encode(self, results: Mapping[str, str]) -> list[bytes]:
        return [
            f"{self.device}@{name}|{orion.safe(result, orion.UL_SEPARATORS)}".encode(
                "utf-8", "backslashreplace"
            )
            for name, result in results.items()
        ]


def clip_name(text: str) -> str:
    """A name off the wire, fit for an answer: bounded and of NAME's charset."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", text[:64])


def _arguments(fields: list[str]) -> Any:
    """None (no value), the value, or {key: value} of `k=v` fields (iotagent-ul's form)."""
    if not fields:
        return None
    if len(fields) == 1 and "=" not in fields[0]:
        return fields[0]
    params: dict[str, Any] = {}
    for f in fields:
        key, eq, value = f.partition("=")
        if not eq or "=" in value:
            raise Refused("malformed command: expected <key>=<value> fields")
        if not NAME.fullmatch(key):
            raise Refused("malformed command: a key is 1..64 of A-Z a-z 0-9 _ . : -")
        if key in params:
            raise Refused(f"malformed command: key {key} given twice")
        params[key] = {"true": True, "false": False}.get(value, value)
    return params
