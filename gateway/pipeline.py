"""From a bus's observations to outbox rows: stamp, sequence, observe, batch, append.

The pipeline is the `Sink` every bus emits into. `emit` stamps time (unless the bus gives
one), allocates sequence numbers, hands the readings to observers (the alert engine) at once,
and queues them; one flusher task appends the queue to the outbox in batches (one transaction
each), so no reading costs its own commit: a batch gathers for `flush_interval` (0.05 s), and
rows that trickle in (an idle gateway) wait until `commit_delay` (2 s) after the last append,
so a quiet site commits (and fsyncs) every 2 s, not once per reading. A staged
reading is durable once its batch is appended: a telemetry reading spends at most about
`commit_delay` in memory before that; alerts, a full batch and closing cut the wait short.
`emit` awaits only for back-pressure when the outbox writer falls behind. Device
availability changes are logged once per transition, and so are values turning implausible
(flagged and forwarded: gateway.model.Reading.plausible) or non-finite (refused) and back.
It knows nothing about drivers' bytes, MQTT or payload formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from gateway.clock import Clock, SystemClock
from gateway.logs import debugging
from gateway.model import (
    OBSERVED_PLAUSIBLE_OF,
    OBSERVED_VALUE_OF,
    Lane,
    Observation,
    Reading,
    sub_device_key,
)
from gateway.outbox.averaging import Averaging
from gateway.outbox.store import Outbox

Observer = Callable[[Sequence[Reading]], None]
_IMPLAUSIBLE, _REFUSED = "implausible", "non-finite"
_MAX_SUSPECT = 10_000  # (device, quantity) pairs remembered as suspect
_new_tuple = tuple.__new__
_isfinite = math.isfinite
# A batch of fewer rows than this is a trickle (under ~300 readings/s): the next one gathers
# until `commit_delay` after it, not just `flush_interval`. Busier, batches go as before.
TRICKLE_ROWS = 16
# Seconds a trickle of telemetry may wait in memory for company before its commit (and fsync).
COMMIT_DELAY = 2.0
StateObserver = Callable[[str, bool, str], None]


def _finite(value: object) -> bool:
    # NaN and infinities have no JSON form and no meaning as a measurement.
    return type(value) is not float or math.isfinite(value)


class Pipeline:
    """The gateway.contract.Sink; use as `async with Pipeline(outbox) as sink`."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        clock: Clock | None = None,
        observers: Sequence[Observer] = (),
        state_observers: Sequence[StateObserver] = (),
        flush_interval: float = 0.05,
        commit_delay: float = COMMIT_DELAY,
        max_batch: int = 5000,
        high_water: int = 50_000,
        averaging: Averaging | None = None,
        log: Any = None,
    ) -> None:
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.observers = list(observers)
        self.state_observers = list(state_observers)
        self.flush_interval = flush_interval
        self.commit_delay = commit_delay
        self._last_append = -math.inf  # loop time the last flush ended
        self._last_rows = 0  # rows it appended
        self._trickling = False  # the flusher sleeps until a trickle's commit is due
        self.max_batch = max_batch
        self.high_water = high_water
        self.averaging = averaging  # the opt-in thinning policy (gateway.outbox.averaging)
        self.log = log or structlog.get_logger().bind(component="pipeline")
        self._debug = debugging(self.log)  # `run --log-level debug`: every accepted reading
        self._pending: list[Reading] = []
        self._wake = asyncio.Event()
        self._urgent = False
        self._closing = False
        self._flush_lock = asyncio.Lock()
        # Wall minus monotonic time while the clock was unsynchronised: when NTP steps the
        # wall clock, the difference of the two offsets corrects every stamp taken before.
        self._was_synced = True
        self._unsynced_offset: float | None = None
        self._first_unsynced_seq: int | None = None
        self._fixups: list[tuple[float, int]] = []
        self.clock_corrections = 0
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self.available: dict[str, bool] = {}
        self.implausible = 0  # readings flagged implausible (forwarded with their flag)
        self.refused = 0  # NaN / infinite values refused
        # (device key, quantity) -> why its last value was suspect; absent when plausible.
        self._suspect: dict[tuple[str, str], str] = {}
        self.emitted = 0

    async def __aenter__(self) -> Pipeline:
        self._task = asyncio.create_task(self._flusher(), name="pipeline-flusher")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Never cancel the flusher inside an append: ask it to finish what is queued and
        # return, so the last batch is written whole.
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.averaging is not None:
            self._pending.extend(self.averaging.drain())  # what was being averaged goes too
        await self.flush()

    # -- the Sink interface ----------------------------------------------------------------
    async def emit(
        self, device: str, observations: Sequence[Observation], ts: float | None = None
    ) -> None:
        await self.outbox.priority.give_way()  # the uplink first (gateway.outbox.priority)
        self.stage(device, observations, ts)
        if len(self._pending) >= self.high_water:
            self._room.clear()
            self._wake.set()
            await self._room.wait()

    def stage(
        self,
        device: str,
        observations: Sequence[Observation],
        ts: float | None = None,
        lane: Lane = Lane.TELEMETRY,
    ) -> list[Reading]:
        """Stamp and queue without waiting (for code that must not block: alert actions).

        A value outside its plausibility range is flagged (`Reading.plausible`), counted in
        `implausible` and goes on like any other; NaN and infinities are refused (no JSON
        form, no meaning), counted in `refused`. Both logged once per transition of a
        device's quantity, not per value."""
        kept = observations
        for v in map(OBSERVED_VALUE_OF, observations):  # in C but for the one comparison per value
            if v.__class__ is float and not _isfinite(v):
                kept = [o for o in observations if _finite(o.value)]
                self._refuse(device, observations)
                break
        if not kept:
            return []
        when = self.clock.now() if ts is None else ts
        synced = self.clock.synced()
        if synced != self._was_synced:
            self._clock_changed(synced)
        seqs = self.outbox.allocate(len(kept))
        # Every field in Reading's order, each tuple built in one call (gateway.model: why);
        # an Observation unpacked once rather than read field by field.
        readings = [
            _new_tuple(Reading, (seq, device, q, v, u, when, synced, lane, None, p, None))
            if s is None
            else Reading(seq, sub_device_key(device, s), q, v, u, when, synced, lane, device, p)
            for seq, (q, v, u, s, p) in zip(seqs, kept, strict=True)
        ]
        if self._suspect or not all(map(OBSERVED_PLAUSIBLE_OF, kept)):
            self._check(readings)
        queued = readings
        if self.averaging is not None:
            queued = self.averaging.take(readings, self.clock.monotonic())
        self._pending.extend(queued)
        self.emitted += len(readings)
        if self._debug:
            self.log.debug(
                "accepted",
                device=device,
                lane=lane.name.lower(),
                values={o.quantity: o.value for o in kept},
                seqs=f"{seqs.start}-{seqs.stop - 1}",
                synced=synced,
            )
        for observer in self.observers:
            observer(readings)
        if lane != Lane.TELEMETRY:
            self._urgent = True
            self._wake.set()
        elif queued and (
            len(self._pending) >= self.max_batch
            or (len(self._pending) == len(queued) and not self._trickling)
        ):
            # The first of a batch starts the clock (a trickle's clock runs already: the
            # flusher looks when its commit is due); a full batch ends it.
            self._wake.set()
        return readings

    # -- implausible and refused values ----------------------------------------------------
    def _check(self, readings: Sequence[Reading]) -> None:
        """Count flagged readings; log when a device's quantity turns implausible or back."""
        for r in readings:
            if not r.plausible:
                self.implausible += 1
            self._transition(
                r.device, r.quantity, None if r.plausible else _IMPLAUSIBLE, r.value, r.unit
            )

    def _refuse(self, device: str, observations: Sequence[Observation]) -> None:
        for o in observations:
            if not _finite(o.value):
                self.refused += 1
                key = device if o.source is None else sub_device_key(device, o.source)
                self._transition(key, o.quantity, _REFUSED, o.value, o.unit)

    def _transition(
        self, device: str, quantity: str, state: str | None, value: object, unit: str
    ) -> None:
        """Log once when (device, quantity) enters `state` (None: plausible), not per value."""
        key = (device, quantity)
        was = self._suspect.get(key)
        if was == state:
            return
        if state is None:
            del self._suspect[key]
            self.log.info("value plausible again", device=device, quantity=quantity, value=value)
            return
        self._suspect[key] = state
        if len(self._suspect) > _MAX_SUSPECT:
            # A flood of distinct keys (ids off the wire) forgets the oldest: at worst one
            # more log line for it later.
            del self._suspect[next(iter(self._suspect))]
        event = "implausible value flagged" if state == _IMPLAUSIBLE else "non-finite value refused"
        self.log.warning(
            event, device=device, quantity=quantity, value=value, unit=unit, repeats="counted only"
        )

    def _clock_changed(self, synced: bool) -> None:
        offset = self.clock.now() - self.clock.monotonic()
        if not synced:
            self._unsynced_offset = offset
            if self._first_unsynced_seq is None:
                self._first_unsynced_seq = self.outbox.allocate(0).start
            self.log.warning("clock not synchronised; readings marked until it is")
        elif self._unsynced_offset is not None and self._first_unsynced_seq is not None:
            delta = offset - self._unsynced_offset
            self._pending = [
                r._replace(ts=r.ts + delta, synced=True) if not r.synced else r
                for r in self._pending
            ]
            self._fixups.append((delta, self._first_unsynced_seq))
            self._unsynced_offset = self._first_unsynced_seq = None
            self._wake.set()
            self.log.info("clock synchronised; correcting earlier readings", shift_s=delta)
        self._was_synced = synced

    def device_state(self, device: str, available: bool, reason: str = "") -> None:
        if self.available.get(device, True) != available:
            if available:
                self.log.info("device available again", device=device)
            else:
                self.log.warning("device unavailable", device=device, reason=reason)
        self.available[device] = available
        for observer in self.state_observers:
            observer(device, available, reason)

    # -- flushing --------------------------------------------------------------------------
    async def flush(self) -> None:
        """Append everything queued so far; returns once it is in the outbox. Calls from the
        flusher and from outside are serialised, so batches reach the outbox in seq order."""
        async with self._flush_lock:
            while self._fixups:
                delta, since = self._fixups.pop(0)
                self.clock_corrections += await self.outbox.correct_times(delta, since)
            rows = len(self._pending)
            while self._pending:
                # An append started now would hold the outbox's writer while the uplink's
                # round waits to acknowledge and lease (gateway.outbox.priority).
                await self.outbox.priority.give_way()
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self.outbox.append(batch)
                if self._debug:
                    self.log.debug("appended to outbox", rows=len(batch), queued=self.outbox.rows)
                if len(self._pending) < self.high_water:
                    self._room.set()
            self._room.set()
            self._last_append, self._last_rows = asyncio.get_running_loop().time(), rows

    async def _flusher(self) -> None:
        """Sleep until something is staged, give it `flush_interval` to gather company (cut
        short by a full batch, an alert or closing), append. After a small batch (a trickle)
        sleep until `commit_delay` after it instead and append what came meanwhile: a quiet
        site wakes once per commit, not per reading. While the disk is full, retry every 5 s."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            due = self._trickle_due(loop.time())
            if due is not None:
                self._trickling = True  # stages do not wake us; alerts and full batches do
                await self._doze(due - loop.time())
                self._trickling = False
            else:
                retry = 5.0 if (self.outbox.stats().disk_full or self.outbox.memory_rows) else None
                await self._doze(retry)
                if 0 < len(self._pending) < self.max_batch and not (self._urgent or self._closing):
                    await self._doze(self.flush_interval)
            if self._pending:
                self._urgent = False
                await self.flush()
            elif due is None:
                # Retries rows buffered in memory while the disk was full.
                await self.outbox.append([])

    def _trickle_due(self, now: float) -> float | None:
        """When the next commit of a trickle is due: `commit_delay` after a small batch."""
        until = self._last_append + self.commit_delay
        return until if self._last_rows < TRICKLE_ROWS and now < until else None

    async def _doze(self, seconds: float | None) -> None:
        """Wait until woken (a stage that matters) or `seconds` pass (None: no limit)."""
        if seconds is None or seconds > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        self._wake.clear()
