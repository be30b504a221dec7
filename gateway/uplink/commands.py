"""Commands from the platform: FIWARE IoT Agent command payloads -> handlers -> results.

A command message is a JSON object `{"<command>": <arguments>}` (several commands may share
one message). Each is answered `{"<command>": "<result>"}`: the handler's text ("OK", "pong",
...) or `ERROR: ...`. Only commands on the config's allow-list run; unknown, forbidden or
malformed ones are answered with an error and logged, and a failing handler never escapes.
Handlers are registered by name (the core adds `ping` and `reload`; drivers and alerts add
theirs through BusContext.commands). No MQTT here: the uplink feeds payloads in and
publishes what comes out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from gateway.errors import GatewayError

Handler = Callable[[Any], Awaitable[str]]


class CommandRouter:
    def __init__(
        self,
        allowed: Iterable[str],
        handlers: Mapping[str, Handler] | None = None,
        *,
        log: Any,
        timeout: float = 30.0,
    ) -> None:
        self.allowed = frozenset(allowed)
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.log = log
        self.timeout = timeout

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    async def handle(self, payload: bytes) -> dict[str, str]:
        """Run every command in one message; returns the result object to publish."""
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.log.warning("malformed command ignored", error=str(exc), payload=payload[:200])
            return {"error": f"ERROR: malformed command: {exc}"}
        if not isinstance(body, dict) or not body:
            self.log.warning("malformed command ignored", payload=payload[:200])
            return {"error": 'ERROR: malformed command: expected a JSON object {"cmd": args}'}
        results: dict[str, str] = {}
        for name, args in body.items():
            results[name] = await self._run(name, args)
        return results

    async def _run(self, name: str, args: Any) -> str:
        if name not in self.handlers:
            self.log.warning("unknown command", command=name)
            return f"ERROR: unknown command {name!r}; known: {', '.join(sorted(self.handlers))}"
        if name not in self.allowed:
            self.log.warning("command not allowed by config", command=name)
            return f"ERROR: command {name!r} is not allowed on this gateway"
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.handlers[name](args)
        except TimeoutError:
            self.log.warning("command timed out", command=name, timeout=self.timeout)
            return f"ERROR: {name} timed out after {self.timeout:g} s"
        except (GatewayError, ValueError, TypeError, KeyError) as exc:
            self.log.warning("command failed", command=name, error=str(exc))
            return f"ERROR: {exc}"
        self.log.info("command done", command=name, result=result)
        return result
