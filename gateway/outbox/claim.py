"""The claim on an outbox: one process at a time, and a sequence ceiling no quarantine loses.

`Claim.take(path)` opens (creating it 0600) `<outbox>.seq` beside the outbox and takes an
exclusive `flock` on it *before* the outbox is opened: a second daemon on the same outbox
gets `StoreLocked` naming the file and the holder's pid, and opens nothing. The kernel drops
the lock when the holder dies, so a crash never leaves a stale lock behind.

The same file records the sequence ceiling: a number no sequence number handed out exceeds.
`cover(seq)` rewrites it in place (fixed width, `pwrite` + `fsync`, so a full disk cannot
stop it: the bytes are already allocated) before the allocator passes it, in steps of `STEP`
so that it costs one fsync per `STEP` readings. A quarantine renames the outbox but leaves
this file, so the fresh outbox starts above every number the old one used. No SQL here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Any

from gateway.errors import StoreLocked, StoreUnusable

SUFFIX = ".seq"
# Seqs reserved per write of the ceiling: one fsync per this many readings, and at most this
# many numbers skipped after a quarantine (strictly increasing is the promise, not dense).
STEP = 100_000
_WIDTH = 20  # digits of the ceiling; then a space, the holder's pid and a newline
_RECORD = _WIDTH + 1 + 10 + 1


def claim_path(outbox: Path) -> Path:
    return outbox.with_name(outbox.name + SUFFIX)


class Claim:
    """The held lock and the ceiling it records. Create with `Claim.take`; `release` it."""

    def __init__(self, path: Path, fd: int, ceiling: int, log: Any) -> None:
        self.path = path
        self.fd = fd
        self.ceiling = ceiling
        self.log = log
        self.found_outbox = False  # whether the outbox file existed when the claim was taken
        self._warned = False

    @classmethod
    def take(cls, outbox: Path, log: Any) -> Claim:
        """Create the store directory if missing (OSError when it cannot be) and lock
        `<outbox>.seq`; StoreLocked when another process holds it, StoreUnusable when it
        cannot be created or opened (read-only directory, no permission)."""
        path = claim_path(outbox)
        # A directory that cannot be created raises OSError as it is: the daemon's runtime
        # maps that (with its path) to a start-up error.
        outbox.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreUnusable(str(path), _cause(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read(fd)[1]
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f" (pid {holder})" if holder else ""
                raise StoreLocked(
                    str(path), f"the outbox is in use by another process{who}"
                ) from None
            raise StoreUnusable(str(path), _cause(exc)) from None
        claim = cls(path, fd, _read(fd)[0], log)
        claim._write(claim.ceiling)  # records our pid for the next one who tries
        claim.found_outbox = outbox.exists()
        return claim

    def cover(self, seq: int) -> None:
        """Make sure the recorded ceiling is at least `seq` (durably) before it is used."""
        if seq > self.ceiling:
            self._write(seq + STEP)

    def _write(self, ceiling: int) -> None:
        record = f"{ceiling:0{_WIDTH}d} {os.getpid():010d}\n".encode()
        try:
            os.pwrite(self.fd, record, 0)
            os.fsync(self.fd)
        except OSError as exc:
            # Only a first write on a full disk gets here (later ones overwrite allocated
            # bytes). The rows are not at risk; only seq after a later quarantine is.
            if not self._warned:
                self._warned = True
                self.log.warning(
                    "cannot record the seq ceiling", path=str(self.path), error=_cause(exc)
                )
            return
        self.ceiling = ceiling

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # closing drops the flock


def _read(fd: int) -> tuple[int, int]:
    """(ceiling, pid) as recorded; zeros for an empty or unreadable file."""
    try:
        raw = os.pread(fd, _RECORD, 0).decode("ascii", "replace").split()
        return int(raw[0]), int(raw[1]) if len(raw) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0, 0


def _cause(exc: OSError) -> str:
    return exc.strerror or str(exc)
