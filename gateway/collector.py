"""The cyclic garbage collector, set for a daemon that streams acyclic values.

Why: every reading is a tuple (gateway.model) holding a Lane member, so CPython keeps it
tracked. At tens of thousands of readings a second the default young-generation threshold
(700 allocations) runs a collection many times a second, and each one also walks the large
lists a batch is made of (a 5,000-row append, a 20,000-row lease) and, now and then, every
object start-up built. Measured (bench e2e, 200,000 readings, defaults): 406 collections took
0.32 s of the daemon's ~2.9 s of CPU, and the hot path made 66 objects of cyclic garbage in
the whole run. With `settle()` after start: 19 collections, 0.04 s.

`settle()` collects once, then moves every object alive (modules, config, profiles, the
running parts: they live as long as the run) out of the collector's sight (`gc.freeze`), and
raises the young threshold to `THRESHOLD[0]`. Cyclic garbage is still collected, in rarer
rounds: at most that many young containers wait for one. Call it when the parts are built:
after start-up and after a reload (the parts a reload replaced are collected first, so no
frozen cycle outlives its run). Changes no value anywhere; only when collections happen.
"""

from __future__ import annotations

import gc

# (young allocations, young collections per middle one, middle per old one): see the module
# docstring for the measurement behind the first; the other two are CPython's defaults.
THRESHOLD = (10_000, 10, 10)


def settle() -> None:
    """Collect what the start-up or a reload left, freeze what lives on, raise the threshold."""
    gc.unfreeze()  # the previous run's parts: a reload may have dropped some
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLD)
