"""systemd's sd_notify protocol: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1, RELOADING=1.

Datagrams go to $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@').
Without NOTIFY_SOCKET every call is a no-op, so the daemon runs the same by hand.
The watchdog interval is half of $WATCHDOG_USEC, pinged from the event loop: a wedged loop
stops the pings and systemd restarts the service. A STATUS= line equal to the last one
systemd took is not sent again (the report refreshes it every 10 s; each datagram wakes PID 1).
"""

from __future__ import annotations

import asyncio
import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._status: str | None = None  # the last STATUS= systemd took
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else None

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never wait on the event loop: a receiver that does not read (a busy systemd,
                # a tool that stopped listening) would otherwise stop the whole daemon.
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError:
            # systemd gone, not listening or not reading (queue full): a lost status line is
            # nothing to wait for, and nothing useful to do about it
            return False
        return True

    def ready(self, status: str = "") -> None:
        if self.send("READY=1", *([f"STATUS={status}"] if status else [])) and status:
            self._status = status

    def status(self, text: str) -> None:
        """Set the status line; not sent when systemd has it already (sent again after a
        failed send)."""
        if text != self._status and self.send(f"STATUS={text}"):
            self._status = text

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    async def watchdog(self) -> None:
        """Ping the watchdog forever (returns at once when no watchdog is configured)."""
        if self.watchdog_interval is None or not self.address:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
