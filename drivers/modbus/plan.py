"""The block-read planner: a device's points -> the fewest Modbus reads per register kind.

Pure. A read may span unrequested registers (a gap) when that saves a round trip, up to
`max_gap` registers, and never exceeds the protocol's per-request limits (Modbus Application
Protocol V1.1b3, sections 6.1-6.4: 2000 coils / discrete inputs, 125 registers per read).
Some devices answer a read that touches an unmapped register with exception 2, so the gap
is configurable and 0 is always safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_COUNT: Mapping[str, int] = {"coil": 2000, "discrete": 2000, "holding": 125, "input": 125}


@dataclass(frozen=True, order=True)
class Block:
    kind: str
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.address + self.count


def plan(
    spans: Iterable[tuple[str, int, int]],
    max_gap: int = 0,
    limits: Mapping[str, int] = MAX_COUNT,
) -> list[Block]:
    """Merge (kind, address, count) spans into blocks, greedily from the lowest address.

    For non-overlapping spans greedy left-to-right merging gives the fewest blocks: a block
    must start at the lowest uncovered span, and extending it as far as the gap and size
    limits allow can only leave fewer spans for the blocks after it.
    """
    by_kind: dict[str, list[tuple[int, int]]] = {}
    for kind, address, count in spans:
        if count < 1 or count > limits[kind]:
            raise ValueError(f"a {kind} span of {count} cannot be read in one request")
        by_kind.setdefault(kind, []).append((address, address + count))
    blocks = []
    for kind in sorted(by_kind):
        limit = limits[kind]
        start = end = None
        for lo, hi in sorted(by_kind[kind]):
            if start is not None and end is not None:
                if lo - end <= max_gap and max(end, hi) - start <= limit:
                    end = max(end, hi)
                    continue
                blocks.append(Block(kind, start, end - start))
            start, end = lo, hi
        if start is not None and end is not None:
            blocks.append(Block(kind, start, end - start))
    return blocks
