"""Triage of a leased batch: the messages that can be published, and the rows that never can.

A row the broker or the platform can never take must not block the rows behind it (it would
be leased, fail and be leased again for ever): a row whose value the format cannot encode, a
message whose topic MQTT forbids (a `+` or `#` wildcard, U+0000, not UTF-8, over 65,535
bytes; MQTT 3.1.1 section 4.7), or a row too large for `max_payload_bytes` even alone. Those
rows come back with their reason for the session to move to the outbox's dead letters.
Pure: no I/O, no logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.model import Reading
from gateway.uplink.wire import Encoder, Message, Target

# What an encoder raises for a value it cannot represent (a BLOB from a hand-edited file, a
# lone surrogate, an integer msgpack cannot hold).
ENCODE_ERRORS = (TypeError, ValueError, UnicodeError, OverflowError)
MAX_TOPIC_BYTES = 65535  # MQTT 3.1.1 section 1.5.3: a UTF-8 string has a 16-bit length


@dataclass
class Triage:
    messages: list[Message] = field(default_factory=list)
    rows: list[Reading] = field(default_factory=list)  # what the messages carry
    dead: list[tuple[list[Reading], str]] = field(default_factory=list)  # (rows, reason)


def topic_problem(topic: str) -> str | None:
    """Why MQTT would refuse `topic` for a PUBLISH, or None when it is fine."""
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "topic contains an MQTT wildcard (+ or #)"
    if "\0" in topic:
        return "topic contains U+0000"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "topic is not valid Unicode"
    if size > MAX_TOPIC_BYTES:
        return f"topic longer than {MAX_TOPIC_BYTES} bytes"
    return None


def triage(rows: Sequence[Reading], encode: Encoder, target: Target, max_bytes: int) -> Triage:
    """Encode `rows`; set aside every row that can never be published, with its reason."""
    out = Triage()
    try:
        messages = encode(rows, target, max_bytes)
        sendable = list(rows)
    except ENCODE_ERRORS:
        # Find the culprits one by one (rare: only a bad row gets here).
        sendable = []
        for r in rows:
            try:
                encode([r], target, max_bytes)
            except ENCODE_ERRORS as exc:
                out.dead.append(([r], f"cannot encode: {type(exc).__name__}: {exc}"[:200]))
                continue
            sendable.append(r)
        messages = encode(sendable, target, max_bytes) if sendable else []
    checked: dict[str, str | None] = {}  # topic -> its problem: one check per device
    bad: list[tuple[Message, str]] = []
    for m in messages:
        if m.topic in checked:
            reason = checked[m.topic]
        else:
            reason = checked[m.topic] = topic_problem(m.topic)
        if reason is None and len(m.payload) > max_bytes:
            reason = f"larger than max_payload_bytes ({len(m.payload)} > {max_bytes}) alone"
        if reason is None:
            out.messages.append(m)
        else:
            bad.append((m, reason))
    if not bad:  # the usual case: every row goes, no per-row bookkeeping
        out.rows = sendable
        return out
    by_seq = {r.seq: r for r in sendable}
    out.dead += [([by_seq[s] for s in m.seqs], reason) for m, reason in bad]
    gone = {r.seq for rows_, _ in out.dead for r in rows_}
    out.rows = [r for r in sendable if r.seq not in gone]
    return out
