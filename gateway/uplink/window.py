"""The in-flight window: what was published and awaits the broker's PUBACK, by lease batch.

A leased batch may take several messages; its rows become acknowledgeable only when the
batch is sealed (every message of it handed to the client) and every one of its messages
has its PUBACK. The session acks what `take_done` returns to the outbox; on a lost session
it `clear`s the window and the outbox releases the leases, so those rows are sent again.
No I/O and no MQTT here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.model import Reading


@dataclass
class Batch:
    """One lease: its rows go back to the outbox as acknowledged when it is sealed and
    `pending` (the message ids still awaiting PUBACK) is empty."""

    rows: list[Reading]
    pending: set[int] = field(default_factory=set)
    sealed: bool = False


class InflightWindow:
    def __init__(self) -> None:
        self._by_mid: dict[int, Batch] = {}
        self._done: list[Batch] = []

    def __len__(self) -> int:
        """Messages awaiting their PUBACK."""
        return len(self._by_mid)

    def add(self, batch: Batch, mid: int) -> None:
        """Message `mid` of `batch` was published with QoS >= 1."""
        batch.pending.add(mid)
        self._by_mid[mid] = batch

    def seal(self, batch: Batch) -> None:
        """Every message of `batch` is published (QoS 0: nothing will be acknowledged)."""
        batch.sealed = True
        if not batch.pending:
            self._done.append(batch)

    def finish(self, rows: list[Reading]) -> None:
        """Rows that leave the outbox without a PUBACK (dropped as unsendable)."""
        self.seal(Batch(rows))

    def puback(self, mid: int) -> bool:
        """The broker acknowledged `mid`; False when it is not ours (e.g. the status topic)."""
        batch = self._by_mid.pop(mid, None)
        if batch is None:
            return False
        batch.pending.discard(mid)
        if batch.sealed and not batch.pending:
            self._done.append(batch)
        return True

    def refuse(self, mid: int, seqs: tuple[int, ...]) -> list[Reading]:
        """The platform refused message `mid` (carrying `seqs`): its rows leave their batch
        and are returned (for the dead letters); the rest of the batch goes on as usual."""
        batch = self._by_mid.get(mid)
        if batch is None:
            return []
        carried = set(seqs)
        refused = [r for r in batch.rows if r.seq in carried]
        batch.rows = [r for r in batch.rows if r.seq not in carried]
        self.puback(mid)
        return refused

    def take_done(self, limit: int | None = None) -> list[Reading]:
        """The rows of finished batches, once each, oldest finished first: every one, or as
        many whole batches as fit in `limit` rows (at least one); the rest stay for the
        next call."""
        n, total = 0, 0
        for b in self._done:
            if n and limit is not None and total + len(b.rows) > limit:
                break
            n, total = n + 1, total + len(b.rows)
        done, self._done = self._done[:n], self._done[n:]
        return [r for b in done for r in b.rows]

    def clear(self) -> None:
        """The session is gone: what was in flight will be leased and sent again."""
        self._by_mid.clear()
