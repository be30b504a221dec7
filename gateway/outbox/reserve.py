"""Space held back on the outbox's disk so that a full disk can still be drained.

Deleting rows is a write too: SQLite records it in the WAL first, so on a disk that is
completely full not even an acknowledgement can be committed and the rows on disk never
leave. `Reserve` keeps a file of `size` bytes beside the outbox (`<outbox>.reserve`, 0600,
allocated with `posix_fallocate`). The writer releases it when a delete fails for lack of
space, and takes it back (`restore`) before it lets appends onto the disk again, so the space
it frees serves the drain, never more appends. The WAL is checkpointed before it exceeds half
the reserve (`wal_pages`), so the reserve can always move it into the file. Knows nothing of
SQL or rows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

SUFFIX = ".reserve"
# At most (an eighth of the filesystem when that is less): twice the WAL that may wait for a
# checkpoint (`wal_pages`): 4 MiB of WAL is what SQLite
# lets wait by default (1,000 pages), so the default costs appends nothing.
DEFAULT_SIZE = 8 << 20


class Reserve:
    def __init__(self, outbox: Path, size: int | None, log: Any) -> None:
        """`size` None: an eighth of the outbox's filesystem, at most DEFAULT_SIZE."""
        self.path = outbox.with_name(outbox.name + SUFFIX)
        self.size = _fitting(outbox.parent) if size is None else size
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

    def release(self, *, quiet: bool = False) -> bool:
        """Give the reserved space to the outbox; False when there was none to give.

        Logged unless `quiet` (the writer borrows it for a moment and restores it)."""
        if self.size == 0 or not self.path.exists():
            return False
        try:
            self.path.unlink()
        except OSError:
            return False
        if not quiet:
            self.log.warning(
                "disk full: released the outbox space reserve to drain", bytes=self.size
            )
        return True

    def wal_pages(self, page_size: int) -> int:
        """How many WAL pages may wait for a checkpoint: half the reserve, so that moving
        them into the file on a full disk fits in the reserve's space (0: SQLite's default)."""
        return max(16, self.size // 2 // page_size) if self.size else 0


def _fitting(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return DEFAULT_SIZE
    # An eighth: a small card (or the tests' 2 MiB tmpfs) keeps most of its space for rows.
    return min(DEFAULT_SIZE, st.f_blocks * st.f_frsize // 8)
