"""Wall-clock time and whether to trust it.

A Raspberry Pi has no RTC: it boots in 1970 or at the last shutdown time until NTP (over the
very uplink that may be down) sets the clock. Readings stamped before that are marked
`synced=False` so the platform and the tests can tell. Synchronisation is read from the
kernel (adjtimex(2) returns TIME_ERROR while the clock is unsynchronised) or from
systemd-timesyncd's flag file; a box with a real RTC sets `trust_clock = true`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
_TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
# Nothing this gateway stamps can predate its own release.
_EARLIEST_VALID = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...

    def synced(self) -> bool:
        """True when `now()` can be trusted."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that NTP never steps (to correct stamps taken before sync)."""
        ...


@functools.cache
def _adjtimex() -> Callable[[], int]:
    """A reader of adjtimex(2)'s state, built once. ctypes is imported here, not with the
    module: a box that trusts its clock or has timesyncd's flag never asks the kernel and never
    loads ctypes and libffi. Raises OSError or AttributeError without a usable C library."""
    import ctypes

    class Timex(ctypes.Structure):
        # struct timex is 208 bytes on 64-bit Linux; with modes = 0 adjtimex only reads.
        _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 204)]

    # The C library this process already runs on (dlopen(NULL)). ctypes.util.find_library
    # would run `ldconfig -p` in a child process at every check, every 10 s on a box without
    # timesyncd's flag, and load shutil, tempfile, bz2 and lzma for good.
    call = ctypes.CDLL(None, use_errno=True).adjtimex
    return lambda: int(call(ctypes.byref(Timex())))


def _kernel_synced() -> bool | None:
    try:
        state = _adjtimex()()
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


class SystemClock:
    """The host clock; the sync check is cached for `recheck` seconds (it is a syscall)."""

    def __init__(self, trust: bool = False, recheck: float = 10.0) -> None:
        self.trust = trust
        self.recheck = recheck
        self._checked_at = -recheck
        self._synced = trust

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def synced(self) -> bool:
        if self.trust:
            return True
        mono = time.monotonic()
        if mono - self._checked_at >= self.recheck:
            self._checked_at = mono
            self._synced = time.time() >= _EARLIEST_VALID and (
                _TIMESYNCD_FLAG.exists() or bool(_kernel_synced())
            )
        return self._synced


class FixedClock:
    """A clock for tests and replays: returns what it is set to."""

    def __init__(self, now: float, synced: bool = True, mono: float = 1000.0) -> None:
        self.t = now
        self.is_synced = synced
        self.mono = mono

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def synced(self) -> bool:
        return self.is_synced


# Every timestamp the gateway sends (payloads, alert dateIssued) has this one form. It is
# built for every measure group published, so from parts formatted once: the calendar day
# (cached), the minute of the day, the second and the milliseconds (tables).
_day_cache: dict[int, str] = {}
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))
_MILLIS = ("Z", *(f".{ms:03d}Z" for ms in range(1, 1000)))


def iso(ts: float) -> str:
    """ISO 8601 UTC with a `Z`; milliseconds only when the time has a fraction."""
    secs, ms = divmod(round(ts * 1000), 1000)
    day, rest = divmod(secs, 86400)
    date = _day_cache.get(day)
    if date is None:
        date = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
        if len(_day_cache) > 1024:
            _day_cache.clear()
        _day_cache[day] = date
    minute, second = divmod(rest, 60)
    return date + _MINUTES[minute] + _SECONDS[second] + _MILLIS[ms]
