"""The order a leased batch's messages are published in, so each device ends on its newest value.

Why: the FIWARE IoT Agent forwards consecutive messages of one device to the context broker
concurrently, so when a backlog of several messages per device drains, a later message can be
applied before an earlier one and the entity ends on an older value than the newest reading
(each update keeps its own TimeInstant: only the entity's current value is wrong). Measured
(notes, `python -m tests.agent_races order`): the agent falls seconds behind a fast drain, and
a device's last, smaller message overtakes its previous ones; a fixed pause after the PUBACKs
does not help (0.5 s: as stale as none), only one longer than the agent's backlog does. Nothing
on MQTT says when the agent has finished, so:

- Devices are interleaved (round robin over topics, each topic's messages in order): one
  device's consecutive messages reach the agent further apart, at no cost.
- When a batch ends a drain (nothing more waits in its lane), the last message of each topic
  that has several in this batch, or (after a full batch: a drain of several) sent one while
  the model agent below may still be busy with it, is held back until
  the agent has likely worked off what we sent: `pause` plus the backlog of a model agent that
  takes `rate` readings per second (a leaky bucket of what we published), at most `cap`. The
  held messages are not waited for: the pump goes on (alerts, other devices) and sends them
  when due, or at once when a newer message of the same topic comes (then they are not the
  newest any more). Steady traffic (batches that are not full, one message per device) is
  never held, whatever its batch window.
Pure: the session publishes; this plans, remembers and models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.model import Lane, Reading
from gateway.uplink.window import Batch
from gateway.uplink.wire import Message

FINAL_PAUSE = 0.5  # seconds on top of the modelled backlog
# Readings per second the platform is assumed to take (agent + context broker). The agent with
# our stub took 2,000-5,000/s on 2 busy cores; Orion on MongoDB may be slower. Too low only
# delays the newest values after a drain; too high lets them be overtaken.
AGENT_RATE = 1000.0
# A huge drain still shows its newest values, and empties the outbox (which then shrinks its
# file), within this many seconds of its end; past ~15,000 readings the model is cut short.
MAX_PAUSE = 15.0


@dataclass(frozen=True)
class Lease:
    """What the session leased: `leased` rows of at most `limit`; `left` still unleased."""

    leased: int
    limit: int
    left: int


@dataclass
class Plan:
    first: list[Message]  # to publish now, in this order
    batch: Batch  # their rows
    held: list[tuple[Message, Batch]]  # each held message with its rows


@dataclass
class Held:
    due: float  # loop time it may go
    message: Message
    batch: Batch  # its rows, acknowledged once it is published and PUBACKed


class DrainOrder:
    """`plan(...)` -> what to publish now and what to hold back; `sent(...)` after each
    publish; `hold`, `next_due`, `release` and `clear` keep the held messages."""

    def __init__(
        self, pause: float = FINAL_PAUSE, rate: float = AGENT_RATE, cap: float = MAX_PAUSE
    ) -> None:
        self.pause = pause
        self.rate = rate
        self.cap = cap
        self.held: list[Held] = []
        self._last: dict[str, float] = {}  # topic -> loop time of its latest publish (recent)
        self._full: dict[Lane | None, bool] = {}  # the lane's last lease was full
        self._level = 0.0  # readings the model agent still has to work off at `_at`
        self._at = 0.0

    def window(self, now: float) -> float:
        """Seconds the model agent still needs for what we sent, plus the pause (capped)."""
        return min(self.cap, self.pause + self._backlog(now) / self.rate)

    def plan(
        self, messages: Sequence[Message], rows: Sequence[Reading], lease: Lease, now: float
    ) -> Plan:
        """Interleave `messages` (carrying `rows`) by topic. When `lease` ends a drain, hold
        back each topic's last message if the topic has several in this batch or, when the
        lease before was full (a drain of several batches), sent one recently."""
        self._forget(now)
        lane = rows[0].lane if rows else None
        after_full, self._full[lane] = self._full.get(lane, False), lease.leased >= lease.limit
        queues: dict[str, list[Message]] = {}
        for m in messages:
            queues.setdefault(m.topic, []).append(m)
        held: list[Message] = []
        if lease.left == 0 and self.pause > 0:
            for topic, queue in queues.items():
                if len(queue) > 1 or (after_full and topic in self._last):
                    held.append(queue.pop())
        first: list[Message] = []
        lists = [q for q in queues.values() if q]
        for i in range(max((len(q) for q in lists), default=0)):
            first += [q[i] for q in lists if i < len(q)]
        if not held:  # nothing held back: the batch is every row, no per-row bookkeeping
            return Plan(first, Batch(list(rows)), [])
        by_seq = {r.seq: r for r in rows}
        held_seqs = {s for m in held for s in m.seqs}
        return Plan(
            first,
            Batch([r for r in rows if r.seq not in held_seqs]),
            [(m, Batch([by_seq[s] for s in m.seqs])) for m in held],
        )

    def sent(self, message: Message, now: float) -> None:
        self._last[message.topic] = now
        self._level = self._backlog(now) + len(message.seqs)
        self._at = now

    def hold(self, held: list[tuple[Message, Batch]], now: float) -> None:
        """Keep these messages (each with its rows) until the model agent is likely done."""
        due = now + self.window(now)
        self.held += [Held(due, message, batch) for message, batch in held]

    def next_due(self) -> float | None:
        return min((h.due for h in self.held), default=None)

    def release(self, now: float, topics: Iterable[str] = ()) -> list[Held]:
        """The held messages that may go now, oldest first: due, or of a topic in `topics`
        (a newer message of that device is about to be published)."""
        wanted = set(topics)
        out = [h for h in self.held if h.due <= now or h.message.topic in wanted]
        self.held = [h for h in self.held if h.due > now and h.message.topic not in wanted]
        return out

    def clear(self) -> None:
        """The session ended: held rows stay leased only until the outbox releases them."""
        self.held.clear()
        self._full.clear()

    def _backlog(self, now: float) -> float:
        return max(0.0, self._level - (now - self._at) * self.rate)

    def _forget(self, now: float) -> None:
        """Only topics that sent while the model agent may still be busy with it matter
        (the dict stays bounded by the recently active topics)."""
        if self._last:
            recent = self.window(now)
            self._last = {t: at for t, at in self._last.items() if now - at < recent}
