"""Commands from the platform: FIWARE IoT Agent command payloads -> handlers -> results.

A command message is decoded by the format's `Codec`: here `JSON_CODEC`, the IoT Agent JSON
form `{"<command>": <arguments>}` (several commands may share one message, at most
MAX_COMMANDS), answered `{"<command>": "<result>"}`; gateway.uplink.ultralight holds the
UltraLight 2.0 form (`<device>@<command>|<value>`). The message is hostile until checked:
- sized before parsing (`max_bytes`, the config's `uplink.command_max_bytes`), its nesting
  depth and key count bounded before and while json decodes it (never a RecursionError, never
  a long stall), its text valid UTF-8 and valid Unicode (no lone surrogates): otherwise one
  ERROR answer (for the command the message names, when the codec can tell which: the agent
  sends one command per message; else under `error`) and one log line;
- only commands on the config's allow-list run; an unknown one is answered with the allowed
  names only;
- a `Command`'s arguments are checked against its declared schema (gateway.schema) before it
  acts; a plain handler takes no arguments (called with None);
- any exception in a handler becomes an ERROR answer and exactly one log line (no traceback);
- answers are bounded: names and results are clipped, and `answer` never returns a message
  larger than the byte limit it is given.
Every result says at a glance how it went (the IoT Agent stores every answer with status OK):
`OK`, `OK: <handler text>` or `ERROR: <reason>`; a handler's own `error: ...` text is an
ERROR. Results are Orion-safe by the one rule (gateway.uplink.orion), so the platform never
refuses an answer and `<command>_status` never stays PENDING for that reason.
Handlers are registered by name (the core adds `ping` and `reload`; drivers and alerts add
theirs through BusContext.commands). No MQTT here: the uplink feeds payloads in and publishes
what comes out.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from gateway.contract import Command, CommandHandler
from gateway.errors import GatewayError
from gateway.schema import ArgumentError
from gateway.uplink import orion

DEFAULT_MAX_BYTES = 4096  # a command is a few dozen bytes; a few KiB leaves ample room
MAX_DEPTH = 8  # {"siren": {"seconds": 30}} is 2 deep
MAX_KEYS = 64  # object keys in one message, all levels together
MAX_COMMANDS = 16  # commands in one message
NAME_MAX = 64  # characters of a command name in an answer or a log line
RESULT_MAX = 200  # characters of one result in an answer
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
# A command name we may answer under although its message was refused: what an IoT Agent
# provisions (an Orion attribute name) and safe in any answer form.
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HANDLER_ERROR = re.compile(r"error\b:?\s*", re.IGNORECASE)  # a handler's own "error: ..."
_FIRST_KEY = re.compile(rb'\s*\{\s*"([A-Za-z0-9_.:-]{1,64})"\s*:')


class Refused(Exception):
    """A message refused before any command ran; the message is the answer's text."""


def clip(text: str, limit: int = NAME_MAX) -> str:
    """`text` cut to `limit` characters (marked with an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(payload: bytes, limit: int = 80) -> str:
    """The start of a payload for a log line: always valid text, however hostile the bytes."""
    return clip(payload[: limit * 4].decode("utf-8", "backslashreplace"), limit)


def text_of(payload: bytes, max_bytes: int) -> str:
    """A command message's text, checked before anything parses it: its size, then UTF-8
    (Refused saying which) — the first checks of every codec."""
    if len(payload) > max_bytes:
        raise Refused(f"command too large, {len(payload)} bytes, limit {max_bytes}")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"malformed command: not UTF-8 text at byte {exc.start}") from None


def parse(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The command object of one message, or Refused saying why (size, depth, keys, text)."""
    text = text_of(payload, max_bytes)
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            raise Refused(f"malformed command: nested deeper than {MAX_DEPTH}")
    keys = 0

    def count(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal keys
        keys += len(pairs)
        if keys > MAX_KEYS:
            raise Refused(f"malformed command: more than {MAX_KEYS} keys")
        return dict(pairs)

    try:
        body = json.loads(text, object_pairs_hook=count)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Refused(f"malformed command: {clip(str(exc), 120)}") from None
    if not isinstance(body, dict) or not body:
        raise Refused("malformed command: expected a JSON object, the command as its key")
    if len(body) > MAX_COMMANDS:
        raise Refused(f"too many commands in one message, {len(body)}, limit {MAX_COMMANDS}")
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("malformed command: text is not valid Unicode, a lone surrogate") from None
    return body


class Codec(Protocol):
    """How one payload format carries commands and their answers."""

    def parse(self, payload: bytes, max_bytes: int) -> dict[str, Any]:
        """{command: arguments} of one message, or Refused saying why."""
        ...

    def name_of(self, payload: bytes) -> str | None:
        """The command a (refused) message is for, when a cheap look at its start can tell
        (it must match NAME); None otherwise. Cheap: runs in the MQTT callback too."""
        ...

    def encode(self, results: Mapping[str, str]) -> list[bytes]:
        """The answer messages for {command: result}."""
        ...


class JsonCodec:
    """FIWARE IoT Agent JSON: `{"<command>": <args>}` in, `{"<command>": "<result>"}` out."""

    def parse(self, payload: bytes, max_bytes: int) -> dict[str, Any]:
        return parse(payload, max_bytes)

    def name_of(self, payload: bytes) -> str | None:
        found = _FIRST_KEY.match(payload[:256])
        return found.group(1).decode() if found else None

    def encode(self, results: Mapping[str, str]) -> list[bytes]:
        try:
            return [json.dumps(results, ensure_ascii=False, separators=(",", ":")).encode()]
        except UnicodeEncodeError:  # a text that is not valid Unicode: escape it
            return [json.dumps(results, separators=(",", ":")).encode()]


JSON_CODEC = JsonCodec()


def failure(reason: str) -> str:
    """A failed command's answer: `ERROR: <reason>`, Orion-safe."""
    return orion.safe(f"ERROR: {reason}")


def success(text: str) -> str:
    """A handler's text as an answer that reads at a glance: `OK`, `OK: <text>` (a text
    already starting with OK kept), or `ERROR: ...` for a handler's own `error: ...` text."""
    text = text.strip()
    own = _HANDLER_ERROR.match(text)
    if own:
        return failure(text[own.end() :] or "failed")
    if text in ("", "OK"):
        return "OK"
    return orion.safe(text if text.startswith(("OK:", "OK ")) else f"OK: {text}")


class CommandRouter:
    def __init__(
        self,
        allowed: Iterable[str],
        handlers: Mapping[str, CommandHandler] | None = None,
        *,
        log: Any,
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.allowed = frozenset(allowed)
        self.handlers: dict[str, CommandHandler] = dict(handlers or {})
        self.log = log
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.refused = 0  # messages refused before any command ran
        self.failed = 0  # commands whose handler raised something unexpected

    def register(self, name: str, handler: CommandHandler) -> None:
        self.handlers[name] = handler

    async def answer(self, payload: bytes, limit: int, codec: Codec = JSON_CODEC) -> list[bytes]:
        """Run one message and encode its answer, each message at most `limit` bytes (never
        raises for anything the message holds)."""
        return self.encode(await self.handle(payload, codec), limit, codec)

    def encode(self, results: Mapping[str, str], limit: int, codec: Codec) -> list[bytes]:
        """Answer messages for `results`; when one is larger than `limit`, every result is
        replaced by an ERROR saying so (under `error` alone if even that does not fit)."""
        bodies = codec.encode(results)
        if all(len(b) <= limit for b in bodies):
            return bodies
        self.log.warning(
            "command answer too large; replaced", size=max(map(len, bodies)), limit=limit
        )
        text = failure("answer larger than max_payload_bytes")
        bodies = codec.encode(dict.fromkeys(results, text))
        if all(len(b) <= limit for b in bodies):
            return bodies
        return codec.encode({"error": text})

    def busy(self, refused: int, names: Iterable[str]) -> dict[str, str]:
        """The results telling the platform that `refused` messages (for the commands
        `names`, where their codec could tell) were refused while the queue was full."""
        text = failure(
            f"busy, {refused} command messages refused while the queue was full, send again"
        )
        return {name: text for name in names} or {"error": text}

    async def handle(self, payload: bytes, codec: Codec = JSON_CODEC) -> dict[str, str]:
        """Run every command in one message; returns {command: result}."""
        try:
            body = codec.parse(payload, self.max_bytes)
        except Refused as exc:
            self.refused += 1
            self.log.warning(
                "command refused", reason=str(exc), size=len(payload), payload=preview(payload)
            )
            return {codec.name_of(payload) or "error": failure(str(exc))}
        results: dict[str, str] = {}
        for name, args in body.items():
            results[clip(name)] = clip(await self._run(name, args), RESULT_MAX)
        return results

    def _known(self) -> str:
        return ", ".join(sorted(n for n in self.handlers if n in self.allowed)) or "none"

    async def _run(self, name: str, args: Any) -> str:
        shown = orion.safe(clip(name))
        if name not in self.handlers or name not in self.allowed:
            reason = "unknown" if name not in self.handlers else "not allowed"
            self.log.warning("command refused", command=clip(name), reason=reason)
            if name in self.handlers:
                return failure(f"command {shown} is not allowed on this gateway")
            return failure(f"unknown command {shown}, known: {self._known()}")
        handler = self.handlers[name]
        try:
            async with asyncio.timeout(self.timeout):
                if isinstance(handler, Command):
                    result = await handler.run(handler.schema.check(args))
                else:
                    result = await handler(None)  # takes no arguments: they are ignored
        except TimeoutError:
            self.log.warning("command timed out", command=shown, timeout=self.timeout)
            return failure(f"{shown} timed out after {self.timeout:g} s")
        except ArgumentError as exc:
            self.log.warning("command refused", command=shown, reason=str(exc))
            return failure(str(exc))
        except KeyError as exc:
            text = str(exc.args[0]) if exc.args else repr(exc)
            self.log.warning("command failed", command=shown, error=text)
            return failure(text)
        except (GatewayError, ValueError, TypeError) as exc:
            self.log.warning("command failed", command=shown, error=str(exc))
            return failure(str(exc))
        except Exception as exc:  # a handler's bug ends this command, never the daemon
            self.failed += 1
            self.log.error(
                "command handler failed",
                command=shown,
                error_type=type(exc).__name__,
                error=clip(str(exc), RESULT_MAX),
            )
            return failure(f"{shown} failed: {type(exc).__name__}")
        answer = success(clip(str(result), RESULT_MAX))
        if answer.startswith("ERROR"):
            self.log.warning("command failed", command=shown, error=answer)
        else:
            self.log.info("command done", command=shown, result=answer)
        return answer
