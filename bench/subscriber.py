"""Platform-side reading counter for benchmarks (a separate process, so the daemon's CPU time
is its own). Prints `ready` once subscribed and `done <readings> <first_t> <last_t>` when the
target count is reached (monotonic seconds), then exits.

    python -m bench.subscriber PORT TARGET [TOPIC]
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def count(payload: bytes) -> int:
    body = json.loads(payload)
    if isinstance(body, list):
        return sum(len(obj) - 1 for obj in body)  # every attribute but TimeInstant
    return len(body) - 1


def main() -> int:
    port, target = int(sys.argv[1]), int(sys.argv[2])
    topic = sys.argv[3] if len(sys.argv) > 3 else "/json/#"
    state = {"n": 0, "first": 0.0, "last": 0.0}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=True)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/attrs"):
            return
        now = time.monotonic()
        if not state["n"]:
            state["first"] = now
        state["n"] += count(msg.payload)
        state["last"] = now
        if state["n"] >= target:
            c.disconnect()

    def on_subscribe(c: mqtt.Client, *args: object) -> None:
        print("ready", flush=True)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port, 60)
    client.loop_forever()
    print(f"done {state['n']} {state['first']} {state['last']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
