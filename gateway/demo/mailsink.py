"""A local SMTP sink for `gateway demo`: aiosmtpd on 127.0.0.1 (a free port) that prints each
mail it receives (recipients, decoded subject, the map links). Demo only: never imported by
the daemon's runtime path; aiosmtpd is a test/demo dependency, imported here lazily.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from typing import Any, TextIO


class MailSink:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.port = 0
        self.count = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.count += 1
        body = msg.get_content() if not msg.is_multipart() else ""
        links = [line for line in body.splitlines() if line.startswith("https://")]
        print(
            f"mail sink <- to {', '.join(envelope.rcpt_tos)}: {msg['Subject']}",
            *(f"    {link}" for link in links),
            sep="\n",
            file=self.out,
            flush=True,
        )
        return "250 OK"

    async def __aenter__(self) -> MailSink:
        from aiosmtpd.smtp import SMTP

        self._server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(self, hostname="demo-mail"), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
