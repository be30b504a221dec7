"""The platform's commands within one MQTT session: receive, run, answer on cmdexe.

A `Responder` belongs to one Uplink and serves each MQTT session's command queue (`serve`):
every message runs through the CommandRouter and is answered in the format's own form
(`commands.JSON_CODEC`, or `ultralight` in `fiware-ul`: never JSON on a UL topic), each
answer bounded by max_payload_bytes and paid from the uplink's token bucket like telemetry.
Retained command messages are ignored (logged once per session, counted); when the client's
bounded queue is full, messages are refused as busy (counted, logged once per burst) and, once
the queue has drained, answered with one busy answer under the commands they were for. It also
ticks paho's keep-alive (`loop_misc`) while waiting for commands.
Must not: publish telemetry, lease or acknowledge rows; HTTP sessions have no commands.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.config.loader import UplinkConfig
from gateway.uplink.client import Connection
from gateway.uplink.commands import JSON_CODEC, MAX_COMMANDS, Codec, CommandRouter
from gateway.uplink.payload import Message, command_topics, wire_bytes
from gateway.uplink.ratelimit import TokenBucket
from gateway.uplink.stats import UplinkStats
from gateway.uplink.ultralight import UltraLightCodec


class Responder:
    def __init__(
        self,
        cfg: UplinkConfig,
        gateway_id: str,
        router: CommandRouter,
        *,
        stats: UplinkStats,
        bucket: TokenBucket,
        log: Any,
    ) -> None:
        self.cfg = cfg
        self.router = router
        self.stats = stats
        self.bucket = bucket
        self.log = log
        self.topic, self.answer_topic = command_topics(cfg.format, cfg.apikey, gateway_id)
        self.codec: Codec = UltraLightCodec(gateway_id) if cfg.format == "fiware-ul" else JSON_CODEC
        self._retained_seen = False  # this session logged its first retained command
        self._busy_unanswered = 0  # busy refusals not yet told to the platform
        self._busy_names: set[str] = set()  # the commands they were for (where known)

    def new_session(self) -> None:
        self._retained_seen = False

    def refused(self, why: str, payload: bytes = b"") -> None:
        """A command message the client did not queue: "retained" or "busy" (its first
        bytes, so the busy answer can go under its command where the codec can tell)."""
        if why == "retained":
            self.stats.commands_retained += 1
            if not self._retained_seen:
                self._retained_seen = True
                self.log.warning("retained command ignored", topic=self.topic)
            return
        self.stats.commands_busy += 1
        if not self._busy_unanswered:
            self.log.warning("command queue full; refusing commands as busy")
        self._busy_unanswered += 1
        name = self.codec.name_of(payload)
        if name is not None and len(self._busy_names) < MAX_COMMANDS:
            self._busy_names.add(name)

    async def serve(self, conn: Connection) -> None:
        """Answer `conn`'s commands and keep its pings going, until cancelled."""
        # paho only needs loop_misc often enough to ping within the keep-alive period.
        tick = min(5.0, self.cfg.keepalive / 4)
        while True:
            try:
                async with asyncio.timeout(tick):
                    payload = await conn.commands.get()
            except TimeoutError:
                conn.loop_misc()
                if self._busy_unanswered:
                    await self._answer_busy(conn)
                continue
            self.stats.commands += 1
            limit = self.cfg.max_payload_bytes
            for body in await self.router.answer(payload, limit, self.codec):
                await self._answer(conn, body)
            if self._busy_unanswered and conn.commands.empty():
                await self._answer_busy(conn)

    async def _answer(self, conn: Connection, body: bytes) -> None:
        """Publish a command answer on cmdexe through the same byte budget as telemetry."""
        await self.bucket.take(wire_bytes(Message(self.answer_topic, body, ()), 1))
        if self.stats.connected:
            conn.publish(self.answer_topic, body, 1)

    async def _answer_busy(self, conn: Connection) -> None:
        """One answer for the command messages refused while the queue was full."""
        refused, self._busy_unanswered = self._busy_unanswered, 0
        names, self._busy_names = sorted(self._busy_names), set()
        self.log.warning("command queue drained; busy refusals answered", refused=refused)
        results = self.router.busy(refused, names)
        for body in self.router.encode(results, self.cfg.max_payload_bytes, self.codec):
            await self._answer(conn, body)
