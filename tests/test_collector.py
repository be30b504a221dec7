"""gateway.collector: what settle() promises, in a child interpreter (it changes the process's
garbage collector, which the test process must keep as it is)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import gc, weakref
from gateway import collector

class Part:
    def __init__(self):
        self.me = self  # a cycle: only the cyclic collector frees it

part = Part()
alive = weakref.ref(part)
collector.settle()
assert gc.get_threshold() == collector.THRESHOLD, gc.get_threshold()
frozen = gc.get_freeze_count()
assert frozen > 0 and gc.get_count()[0] < 100, (frozen, gc.get_count())
assert alive() is not None  # still used: frozen with the rest

del part  # a reload drops a part: frozen, in a cycle
collector.settle()
assert alive() is None, "a frozen cycle dropped before settle() must be collected by it"

garbage = Part()
dead = weakref.ref(garbage)
del garbage
gc.collect()
assert dead() is None  # cyclic garbage made after settle() is still collected
print("ok")
"""


def test_settle_freezes_what_lives_raises_the_threshold_and_frees_what_a_reload_dropped() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
