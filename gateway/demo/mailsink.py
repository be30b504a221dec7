"""A local SMTP sink for `gateway demo`: aiosmtpd on 127.0.0.1 (a free port) that prints each
mail it receives (recipients, decoded subject, the map links; a digest's figures) and, for a
mail with charts (the daily digest, a threshold or rate alert), writes its HTML part with the
inline images resolved to `<save_dir>/mail-<n>.html` and prints that path: open it in a
browser to see the mail as a phone shows it. Demo only: never imported by the daemon's runtime
path; aiosmtpd is a test/demo dependency, imported here lazily.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TextIO


class MailSink:
    def __init__(self, out: TextIO, save_dir: Path | None = None) -> None:
        self.out = out
        self.save_dir = save_dir
        self.port = 0
        self.count = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)  # policy.default parses into EmailMessage
        self.count += 1
        text = msg.get_body(("plain",))
        body = text.get_content() if text is not None else ""
        lines = [f"mail sink <- to {', '.join(envelope.rcpt_tos)}: {msg['Subject']}"]
        lines += [f"    {ln}" for ln in body.splitlines() if ln.startswith("https://")]
        # A digest: its figures, as the plain text says them.
        lines += [f"    {ln.strip()}" for ln in body.splitlines() if ln.startswith(("■", "  "))]
        page = self._save(msg)
        if page is not None:
            lines.append(f"    with charts: {page}")
        print(*lines, sep="\n", file=self.out, flush=True)
        return "250 OK"

    def _save(self, msg: EmailMessage) -> Path | None:
        """The HTML part with its images beside it (cid: links made file names), or None."""
        html = msg.get_body(("html",))
        if html is None or self.save_dir is None:
            return None
        page = html.get_content()
        self.save_dir.mkdir(parents=True, exist_ok=True)
        images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        for n, part in enumerate(images, 1):
            name = f"mail-{self.count}-chart-{n}.png"
            (self.save_dir / name).write_bytes(part.get_content())
            page = page.replace(f"cid:{str(part['Content-ID']).strip('<>')}", name)
        path = self.save_dir / f"mail-{self.count}.html"
        path.write_text(page, encoding="utf-8")
        return path

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
