"""The mailer: drains the outbox MAIL lane to an SMTP server (aiosmtplib).

Rows are leased, composed (gateway.alerts.compose) and sent; each row is acknowledged right
after the server accepted its message, so a dead mail server or a restart only delays mail. Sent
once: before the ack, the row's idempotency key is appended (fsync'd) to `mail-sent.log` beside
the outbox, and a row whose key is already there is acknowledged without sending (a crash
between the server's OK and the ack does not send twice). Failures are retried by
`gateway.supervise.retry` (capped, jittered backoff, logged on transitions only); a message the
server refuses for good (5xx on a recipient or the data) is logged and dropped so it cannot
block the others, and so is a row no config could send. A mail with charts (the digest, a
threshold or rate alert) has them drawn by gateway.alerts.renderer in a child process before
the server is contacted; when that fails the mail goes text-only. Telemetry never waits for
any of this: the mailer only touches its own lane. The SMTP password is read from its file at
connect time and never logged. STARTTLS or implicit TLS, with login when configured. No text
is written here: that is gateway.alerts.compose.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from gateway.alerts.compose import Composer, Mail, Snapshots, Unsendable
from gateway.alerts.config import AlertsConfig, SmtpConfig
from gateway.alerts.renderer import ChartFailed, Renderer
from gateway.errors import Transient
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from gateway.supervise import Backoff, Health, retry

_KEEP_KEYS = 2000  # idempotency keys remembered; far more than mail sent between restarts


class SentLog:
    """Idempotency keys of delivered mail, durable before the outbox row is acknowledged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys: set[str] = set()
        lines: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            lines = [k for k in path.read_text(encoding="utf-8").splitlines() if k]
        if len(lines) > _KEEP_KEYS:
            lines = lines[-_KEEP_KEYS // 2 :]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(k + "\n" for k in lines), encoding="utf-8")
            tmp.replace(path)
        self.keys = set(lines)

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def add(self, key: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.keys.add(key)


class Refused(Exception):
    """The server refused this one message for good."""


class Mailer:
    """Sends the MAIL lane; run `run()` in the daemon's TaskGroup, or `drain()` once."""

    def __init__(
        self,
        cfg: AlertsConfig,
        outbox: Outbox,
        *,
        site: str,
        timezone: str,
        log: Any,
        sent_path: Path | None = None,
        backoff: Backoff | None = None,
        batch: int = 20,
        renderer: Renderer | None = None,
        recent: Snapshots | None = None,
    ) -> None:
        """`renderer` draws the charts (default: the plot child process, its font cache
        beside the outbox); `recent` gives an alert's last hour (gateway.alerts.recent)."""
        if cfg.smtp is None:
            raise ValueError("no [alerts.smtp] configured: nothing to send mail with")
        self.smtp: SmtpConfig = cfg.smtp
        self.composer = Composer(cfg, site=site, timezone=timezone)
        self.outbox = outbox
        self.log = log
        self.sent = SentLog(sent_path or Path(outbox.path).with_name("mail-sent.log"))
        self.backoff = backoff or Backoff(self.smtp.retry_min, self.smtp.retry_max)
        self.health = Health(log, "mail server")
        self.batch = batch
        self.renderer = renderer or Renderer(
            log=log, cache_dir=Path(outbox.path).with_name("chart-cache")
        )
        self.recent = recent
        self.delivered = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        outbox.listeners.append(self._on_append)

    def _on_append(self, lanes: set[Lane]) -> None:
        if Lane.MAIL in lanes:
            self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                if not self.outbox.unleased(Lane.MAIL):
                    await self._wake.wait()
                    continue
                # New mail does not cut the backoff short: the server is what we wait for.
                leased = await retry(self.drain, self.backoff, health=self.health)
                if not leased:
                    await self._wake.wait()  # rows counted but leased elsewhere: no spinning
        finally:
            self.outbox.listeners.remove(self._on_append)

    async def drain(self) -> int:
        """Send every waiting mail; raises Transient when the server cannot be used.
        Returns how many rows were leased."""
        leased = 0
        while rows := await self.outbox.lease(Lane.MAIL, self.batch):
            leased += len(rows)
            pending = {r.seq: r for r in rows}
            try:
                todo: list[tuple[Reading, Mail]] = []
                for r in rows:
                    item = self._compose(r)
                    if item is None:
                        await self._ack(r)
                        del pending[r.seq]
                    else:
                        todo.append((r, item))
                for _r, mail in todo:
                    await self._illustrate(mail)
                if todo:
                    await self._send(todo, pending)
            finally:
                self.outbox.release(pending)
        return leased

    async def _ack(self, r: Reading) -> None:
        # Shielded: a cancel (daemon stop) between the store's BEGIN and COMMIT would leave
        # the transaction open for the pipeline's final flush. The store's write lock makes
        # that flush wait for this ack to finish.
        await asyncio.shield(self.outbox.ack([r]))

    def _compose(self, r: Reading) -> Mail | None:
        """The row's mail, or None when the row needs no sending (sent before, unsendable)."""
        try:
            if self.composer.key(r) in self.sent:
                return None  # delivered before a crash took the ack with it
            return self.composer.compose(r, self.recent)
        except Unsendable as exc:
            self.log.error("mail row dropped", seq=r.seq, error=str(exc))
            return None

    async def _illustrate(self, mail: Mail) -> None:
        """Draw the mail's charts into it; without them (the renderer failed and said so
        once) it goes as it is: text, never lost."""
        if not mail.charts:
            return
        try:
            pngs = await self.renderer.render(mail.charts)
        except ChartFailed:
            return
        mail.illustrate(pngs)

    def _password(self) -> str | None:
        if not self.smtp.password_file:
            return None
        try:
            return Path(self.smtp.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Transient(f"cannot read SMTP password file: {exc.strerror}") from None

    async def _send(self, todo: list[tuple[Reading, Mail]], pending: dict[int, Reading]) -> None:
        s = self.smtp
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=self._password() if s.username else None,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            cert_bundle=s.ca_file or None,
            timeout=s.timeout,
        )
        try:
            async with client:
                self.health.up(server=f"{s.host}:{s.port}")
                for r, mail in todo:
                    try:
                        await self._send_one(client, mail.message, mail.to)
                    except Refused as exc:
                        self.dropped += 1
                        self.log.error("mail refused; dropped", key=mail.key, error=str(exc))
                    else:
                        self.sent.add(mail.key)
                        self.delivered += 1
                        self.log.info("mail sent", key=mail.key, to=len(mail.to))
                    await self._ack(r)
                    del pending[r.seq]
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Connection, TLS, login or a temporary (4xx) refusal: try again later.
            raise Transient(f"SMTP {s.host}:{s.port}: {exc}") from None

    @staticmethod
    async def _send_one(
        client: aiosmtplib.SMTP, msg: EmailMessage, to: tuple[str, ...]
    ) -> Mapping[str, Any]:
        try:
            errors, _ = await client.send_message(msg, recipients=list(to))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(e.code >= 500 for e in exc.recipients):
                raise Refused(str(exc)) from None
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                raise Refused(str(exc)) from None
            raise
        return errors
