"""The gateway's one error tree.

Library exceptions (pyserial, pymodbus, bleak, paho, sqlite3, smtplib) are mapped onto these in
the one module that calls the library. `Transient` means "retry later with backoff";
`Permanent` means "stop this component and report it". Nothing here logs.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class Transient(GatewayError):
    """Worth retrying: a timeout, a dropped link, a busy peer, a full disk."""


class Permanent(GatewayError):
    """Retrying will not help until someone changes something (config, credentials, wiring)."""


class DecodeError(GatewayError):
    """Input that a decoder cannot turn into observations (garbage frame, bad checksum)."""


class ConfigError(Permanent):
    """A configuration or profile problem; `problems` lists each one with its path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class Problem:
    """One configuration problem: where (a dotted path, buses[1].devices[0].unit) and what."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.path, self.message) == (
            other.path,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message))


class DeviceUnavailable(Transient):
    """A device did not answer usefully (timeout, exception code, CRC error)."""


class BusUnavailable(Transient):
    """The bus itself is gone (adapter unplugged, TCP peer unreachable)."""


class StoreFull(Transient):
    """The outbox could not write: the disk (or the configured page budget) is full."""


class StoreUnusable(Permanent):
    """The outbox cannot be used as it is: no permission, a read-only directory, a file that
    is corrupt and cannot be moved aside. `path` is the file, `cause` what is wrong with it;
    the daemon stops (exit 78) and leaves every row where it is."""

    def __init__(self, path: str, cause: str) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class StoreLocked(StoreUnusable):
    """Another process holds the outbox (a second daemon, or a tool inside a transaction)."""


class LinkDown(Transient):
    """The uplink has no session with the broker."""


class LinkRefused(Permanent):
    """The broker refused us (bad credentials, not authorised, TLS verification failed)."""
