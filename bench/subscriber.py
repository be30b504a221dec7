"""Platform-side reading counter for benchmarks (a separate process, so the daemon's CPU time
is its own). Prints `ready` once subscribed and, when the target count is reached (monotonic
seconds), `done <readings> <first_t> <last_t> <bulk_readings> <bulk_last_t>`, then exits.

The bulk is every reading before the uplink's end-of-drain hold (gateway.uplink.order: when a
drain ends, each device's newest message waits up to MAX_PAUSE seconds so the IoT Agent cannot
apply it before the older ones): `bulk_*` time the stream itself, `last_t` includes the hold.

    python -m bench.subscriber PORT TARGET [TOPIC]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.uplink.order import FINAL_PAUSE

# A quiet spell this long before the last messages marks a hold (it lasts FINAL_PAUSE or more).
HOLD_GAP = FINAL_PAUSE / 2


def count(payload: bytes | bytearray) -> int:
    body = json.loads(payload)
    if isinstance(body, list):
        return sum(len(obj) - 1 for obj in body)  # every attribute but TimeInstant
    return len(body) - 1


def hold_start(arrivals: Sequence[tuple[float, str]], gap: float = HOLD_GAP) -> int:
    """Index of the first held message in `arrivals` ((time, topic) in arrival order), or
    len(arrivals) when nothing was held. Held messages come last, at most one per topic, after
    a quiet spell of at least `gap` seconds; the earliest such spell counts (the held messages
    of one drain may be released a little apart)."""
    start = len(arrivals)
    seen: set[str] = set()
    for k in range(len(arrivals) - 1, 0, -1):
        topic = arrivals[k][1]
        if topic in seen:
            break
        seen.add(topic)
        if arrivals[k][0] - arrivals[k - 1][0] >= gap:
            start = k
    return start


def main() -> int:
    port, target = int(sys.argv[1]), int(sys.argv[2])
    topic = sys.argv[3] if len(sys.argv) > 3 else "/json/#"
    arrivals: list[tuple[float, str]] = []
    counts: list[int] = []
    total = [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=True)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/attrs"):
            return
        arrivals.append((time.monotonic(), msg.topic))
        counts.append(count(msg.payload))
        total[0] += counts[-1]
        if total[0] >= target:
            c.disconnect()

    def on_subscribe(c: mqtt.Client, *args: object) -> None:
        print("ready", flush=True)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port, 60)
    client.loop_forever()
    k = hold_start(arrivals)
    bulk_last = arrivals[k - 1][0] if k else arrivals[0][0]
    print(
        f"done {total[0]} {arrivals[0][0]} {arrivals[-1][0]} {sum(counts[:k])} {bulk_last}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
