"""Commands from the platform: FIWARE IoT Agent command payloads -> handlers -> results.

A command message is a JSON object `{"<command>": <arguments>}` (several commands may share
one message, at most MAX_COMMANDS). Each is answered `{"<command>": "<result>"}`: the
handler's text ("OK", "pong", ...) or `ERROR: ...`. The message is hostile until checked:
- sized before parsing (`max_bytes`, the config's `uplink.command_max_bytes`), its nesting
  depth and key count bounded before and while json decodes it (never a RecursionError, never
  a long stall), its text valid UTF-8 and valid Unicode (no lone surrogates): otherwise one
  `{"error": "ERROR: ..."}` answer and one log line;
- only commands on the config's allow-list run; an unknown one is answered with the allowed
  names only;
- a `Command`'s arguments are checked against its declared schema (gateway.schema) before it
  acts; a plain handler takes no arguments (called with None);
- any exception in a handler becomes an ERROR answer and exactly one log line (no traceback);
- answers are bounded: names and results are clipped, and `answer` never returns more than
  the byte limit it is given.
Handlers are registered by name (the core adds `ping` and `reload`; drivers and alerts add
theirs through BusContext.commands). No MQTT here: the uplink feeds payloads in and publishes
what comes out.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.contract import Command, CommandHandler
from gateway.errors import GatewayError
from gateway.schema import ArgumentError

DEFAULT_MAX_BYTES = 4096  # a command is a few dozen bytes; a few KiB leaves ample room
MAX_DEPTH = 8  # {"siren": {"seconds": 30}} is 2 deep
MAX_KEYS = 64  # object keys in one message, all levels together
MAX_COMMANDS = 16  # commands in one message
NAME_MAX = 64  # characters of a command name in an answer or a log line
RESULT_MAX = 200  # characters of one result in an answer
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class Refused(Exception):
    """A message refused before any command ran; the message is the answer's text."""


def clip(text: str, limit: int = NAME_MAX) -> str:
    """`text` cut to `limit` characters (marked with an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(payload: bytes, limit: int = 80) -> str:
    """The start of a payload for a log line: always valid text, however hostile the bytes."""
    return clip(payload[: limit * 4].decode("utf-8", "backslashreplace"), limit)


def parse(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The command object of one message, or Refused saying why (size, depth, keys, text)."""
    if len(payload) > max_bytes:
        raise Refused(f"command too large ({len(payload)} bytes > {max_bytes})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"malformed command: not UTF-8 text (byte {exc.start})") from None
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
        raise Refused('malformed command: expected a JSON object {"cmd": args}')
    if len(body) > MAX_COMMANDS:
        raise Refused(f"too many commands in one message ({len(body)} > {MAX_COMMANDS})")
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("malformed command: text is not valid Unicode (lone surrogate)") from None
    return body


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

    async def answer(self, payload: bytes, limit: int) -> bytes:
        """Run one message and encode its answer in at most `limit` bytes (never raises
        for anything the message holds)."""
        results = await self.handle(payload)
        try:
            body = json.dumps(results, ensure_ascii=False, separators=(",", ":")).encode()
        except UnicodeEncodeError:  # a handler's text that is not valid Unicode: escape it
            body = json.dumps(results, separators=(",", ":")).encode()
        if len(body) > limit:
            self.log.warning("command answer too large; replaced", size=len(body), limit=limit)
            body = json.dumps({"error": "ERROR: answer larger than max_payload_bytes"}).encode()
        return body

    async def handle(self, payload: bytes) -> dict[str, str]:
        """Run every command in one message; returns the result object to publish."""
        try:
            body = parse(payload, self.max_bytes)
        except Refused as exc:
            self.refused += 1
            self.log.warning(
                "command refused", reason=str(exc), size=len(payload), payload=preview(payload)
            )
            return {"error": f"ERROR: {exc}"}
        results: dict[str, str] = {}
        for name, args in body.items():
            results[clip(name)] = clip(await self._run(name, args), RESULT_MAX)
        return results

    def _known(self) -> str:
        return ", ".join(sorted(n for n in self.handlers if n in self.allowed)) or "none"

    async def _run(self, name: str, args: Any) -> str:
        shown = clip(name)
        if name not in self.handlers or name not in self.allowed:
            reason = "unknown" if name not in self.handlers else "not allowed"
            self.log.warning("command refused", command=shown, reason=reason)
            if name in self.handlers:
                return f"ERROR: command {shown!r} is not allowed on this gateway"
            return f"ERROR: unknown command {shown!r}; known: {self._known()}"
        handler = self.handlers[name]
        try:
            async with asyncio.timeout(self.timeout):
                if isinstance(handler, Command):
                    result = await handler.run(handler.schema.check(args))
                else:
                    result = await handler(None)  # takes no arguments: they are ignored
        except TimeoutError:
            self.log.warning("command timed out", command=shown, timeout=self.timeout)
            return f"ERROR: {shown} timed out after {self.timeout:g} s"
        except ArgumentError as exc:
            self.log.warning("command refused", command=shown, reason=str(exc))
            return f"ERROR: {exc}"
        except KeyError as exc:
            text = str(exc.args[0]) if exc.args else repr(exc)
            self.log.warning("command failed", command=shown, error=text)
            return f"ERROR: {text}"
        except (GatewayError, ValueError, TypeError) as exc:
            self.log.warning("command failed", command=shown, error=str(exc))
            return f"ERROR: {exc}"
        except Exception as exc:  # a handler's bug ends this command, never the daemon
            self.failed += 1
            self.log.error(
                "command handler failed",
                command=shown,
                error_type=type(exc).__name__,
                error=clip(str(exc), RESULT_MAX),
            )
            return f"ERROR: {shown} failed ({type(exc).__name__})"
        result = clip(str(result), RESULT_MAX)
        self.log.info("command done", command=shown, result=result)
        return result
