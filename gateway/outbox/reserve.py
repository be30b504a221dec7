"""Space held back on the outbox's disk so that a full disk can still be drained.

Deleting rows is a write too: SQLite records it in the WAL first, so on a disk that is
completely full not even an acknowledgement can be committed and the rows on disk never
leave. `Reserve` keeps a file of `size` bytes beside the outbox (`<outbox>.reserve`, 0600,
allocated with `posix_fallocate`). The writer releases it when a delete fails for lack of
space, and takes it back (`restore`) before it lets appends onto the disk again, so the space
it frees serves the drain, never more appends. Knows nothing of SQL or rows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

SUFFIX = ".reserve"
DEFAULT_SIZE = 1 << 20  # a WAL for deleting a few 1,000-row batches, checkpointed between


class Reserve:
    def __init__(self, outbox: Path, size: int, log: Any) -> None:
        self.path = outbox.with_name(outbox.name + SUFFIX)
        self.size = size
        self.log = log

    @property
    def held(self) -> bool:
        try:
            return self.size == 0 or self.path.stat().st_size >= self.size
        except OSError:
            return False

    def restore(self) -> bool:
        """Hold the reserve again; False when the disk has not got the space (yet)."""
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError:
            # A half-allocated reserve would hold space without counting as held.
            with contextlib.suppress(OSError):
                self.path.unlink()
            return False
        self.log.info("outbox space reserve restored", path=str(self.path), bytes=self.size)
        return True

    def release(self) -> bool:
        """Give the reserved space to the outbox; False when there was none to give."""
        if self.size == 0 or not self.path.exists():
            return False
        try:
            self.path.unlink()
        except OSError:
            return False
        self.log.warning("disk full: released the outbox space reserve to drain", bytes=self.size)
        return True
