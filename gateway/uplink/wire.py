"""What goes on the wire: the Message an encoder produces, the Target naming it, ISO 8601
time, size-bounded splitting and MQTT size accounting. Shared by every payload encoder;
pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Lane, Reading

# Entries a Target remembers per cache: configured devices have a few dozen names, but
# sub-device keys come off the air (trap ids, advertisers' MACs) and must not grow it for ever.
MEMO_LIMIT = 100_000


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    seqs: tuple[int, ...]
    lane: Lane = Lane.TELEMETRY
    # The one device a per-device format's message is about (fiware-json: the HTTP
    # transport's `i=`); "" for formats that mix devices in one message.
    device: str = ""


@dataclass(frozen=True)
class Target:
    """Where and under which names readings are published."""

    apikey: str
    gateway_id: str
    topic_prefix: str = "gateway"
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    _resolved: dict[tuple[str, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _formed: dict[tuple[Callable[[str], str], str, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def attr(self, device: str, quantity: str, parent: str | None = None) -> str:
        """The configured name; a sub-device (`traps-17` behind receiver `traps`, given as
        `parent`) inherits its receiver's names; else the quantity itself."""
        key = (device, quantity)
        name = self._resolved.get(key)
        if name is None:
            name = self.attributes.get(key)
            if name is None and parent is not None:
                name = self.attributes.get((parent, quantity))
            if name is None:
                name = quantity
            if len(self._resolved) >= MEMO_LIMIT:
                self._resolved.clear()
            self._resolved[key] = name  # misses too: resolved once per (device, quantity)
        return name

    def formed(
        self, form: Callable[[str], str], device: str, quantity: str, parent: str | None = None
    ) -> str:
        """`form(attr(...))`, made once per (form, device, quantity): an encoder's text for
        the name (the JSON key with its colon, the UltraLight name) costs more than the rest
        of a reading's encoding, and a device's names never change."""
        key = (form, device, quantity)
        text = self._formed.get(key)
        if text is None:
            if len(self._formed) >= MEMO_LIMIT:
                self._formed.clear()  # sub-devices come off the air: never grow for ever
            text = self._formed[key] = form(self.attr(device, quantity, parent))
        return text


Encoder = Callable[[Sequence[Reading], Target, int], list[Message]]


def by_device(readings: Sequence[Reading]) -> dict[str, list[Reading]]:
    """Group by device, keeping each device's readings in the order given."""
    groups: dict[str, list[Reading]] = {}
    for r in readings:
        groups.setdefault(r.device, []).append(r)
    return groups


def split(
    items: Sequence[Any], render: Callable[[Sequence[Any]], bytes], max_bytes: int
) -> list[tuple[Sequence[Any], bytes]]:
    """Render items in as few chunks as fit `max_bytes` (halving until they do)."""
    payload = render(items)
    if len(payload) <= max_bytes or len(items) <= 1:
        return [(items, payload)]
    mid = len(items) // 2
    return split(items[:mid], render, max_bytes) + split(items[mid:], render, max_bytes)


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def wire_bytes(message: Message, qos: int = 1) -> int:
    """Bytes an MQTT 3.1.1 PUBLISH of this message and its PUBACK take on the wire (MQTT
    3.1.1 section 3.3: fixed header, topic length + topic, packet id at QoS>0, payload)."""
    remaining = 2 + len(message.topic.encode()) + (2 if qos else 0) + len(message.payload)
    return 1 + _varint_len(remaining) + remaining + (4 if qos else 0)
