"""The host clock's sync check: the kernel's answer (adjtimex) is read, cheaply."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from gateway.clock import _kernel_synced
print(_kernel_synced(), "ctypes.util" in sys.modules)
"""


def test_the_kernel_answers_the_sync_check_without_find_library() -> None:
    # None would mean the C library or adjtimex was not found: every reading of an untrusted
    # clock would then count as unsynchronised on a box without timesyncd's flag file.
    # ctypes.util.find_library ran `ldconfig -p` in a child process at every check (10 s).
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    synced, find_library_loaded = out.stdout.split()
    assert synced in ("True", "False")
    assert find_library_loaded == "False"
