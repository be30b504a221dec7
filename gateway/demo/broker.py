"""A local mosquitto on a free loopback port, for `gateway demo`, the tests and benchmarks.

Writes a throw-away config into a work directory, starts mosquitto in the foreground, waits
until the port accepts connections, and stops it on exit. It can be stopped and started again
on the same port (an outage). Not for production: the platform's broker is elsewhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BrokerTls:
    cafile: str
    certfile: str
    keyfile: str
    require_certificate: bool = False


class LocalBroker:
    """`with LocalBroker(dir) as broker:` ... `broker.port`, `broker.stop()`, `broker.start()`."""

    def __init__(
        self,
        workdir: str | Path,
        port: int | None = None,
        *,
        tls: BrokerTls | None = None,
        password_file: str | None = None,
        persistence: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.tls = tls
        self.password_file = password_file
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            raise FileNotFoundError(
                "mosquitto is not installed (Debian: apt-get install -y mosquitto)"
            )

    def _config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_inflight_messages 0",
            "max_queued_messages 0",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to the `mosquitto` user and then cannot read files
            # written by ours (its password file, our TLS keys).
            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.tls:
            lines += [
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        path = self.workdir / f"mosquitto-{self.port}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        conf = self._config()
        self.log = open(self.workdir / f"mosquitto-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{self.port} in {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
