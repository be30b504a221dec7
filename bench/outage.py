"""Time back after a broker outage, the daemon as a process with the defaults a user gets.

The daemon runs (`python -m gateway run`, 100 synthetic devices, a reading a minute each as in
the idle figure, every [uplink] key at its default), mosquitto is stopped for 60 s (15 s
quick, 5 s smoke) and started again (without persistence: our session is gone, as after a
broker reboot). From the moment the broker listens again:
- `outage_to_reconnect_s`: to the uplink's "uplink recovered" line. The reconnect backoff
  decides it: 5 s doubling to 300 s, +-20 % jitter (gateway.supervise), so after a 60 s outage
  the next attempt comes anywhere from a few seconds to ~40 s after the broker is back.
- `outage_to_first_publish_s`: to the first telemetry PUBLISH a subscriber on `#` sees.
- `outage_reconnect_to_first_publish_s`: the difference, what the uplink adds once connected:
  the resume hold (`resume_delay`, 10 s: the platform's agent re-subscribes after a broker
  lost our session; issue 11) and what is left of the telemetry batch window (60 s), which
  counts from the oldest waiting row: after an outage longer than the window the rows go right
  after the hold.
One outage per repeat (each takes the outage, the reconnect and the wait); nothing asserted.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.figures import Doc, Figure, Mode, collect, repeat
from bench.startup import Daemon, _small, _timestamp, bytecode_env, warm
from gateway.config.loader import UplinkConfig
from gateway.demo.broker import LocalBroker

REPEATS = 1  # each repeat is an outage of a minute and the way back
OUTAGE_S: dict[Mode, float] = {"smoke": 5.0, "quick": 15.0, "full": 60.0}
DEVICES, EVERY_S = 100, 60.0  # the idle figure's site: 1.7 readings/s, batches never fill
STATUS_TOPIC = "gateway/startup/status"  # the fixture's gateway id is "startup"
DOCS = {
    "outage_to_first_publish_s": Doc(
        "broker back after a 60 s outage → first telemetry at a subscriber; defaults"
    ),
    "outage_to_reconnect_s": Doc("the same outage: broker back → uplink reconnected (backoff)"),
    "outage_reconnect_to_first_publish_s": Doc(
        "the same: reconnected → first telemetry (resume hold 10 s + what is left of the window)"
    ),
}


@contextlib.contextmanager
def first_telemetry(port: int, status_topic: str) -> Iterator[list[float]]:
    """A subscriber on everything; the list gets the wall time of the first PUBLISH that is
    not the gateway's retained status."""
    seen: list[float] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-outage")

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != status_topic and not seen:
            seen.append(time.time())

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise TimeoutError("bench subscriber did not subscribe")
        yield seen
    finally:
        client.disconnect()
        client.loop_stop()


def outage(seconds: float, cache: Path) -> dict[str, float]:
    """Broker down for `seconds`; from its return to the uplink's recovery and first publish."""
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "b") as broker:
        work = Path(tmp)
        env = bytecode_env(cache, compiled=True)
        cfg = _small(work, broker.port, DEVICES, EVERY_S)
        warm(cfg, work, env)
        daemon = Daemon(cfg, work, env)
        try:
            daemon.ready()
            daemon.connected()
            daemon.offset = daemon.log_path.stat().st_size
            broker.stop()
            time.sleep(seconds)
            broker.start()
            back = time.time()
            with first_telemetry(broker.port, STATUS_TOPIC) as seen:
                recovered = _timestamp(daemon.line("uplink recovered", timeout=seconds * 6 + 60))
                deadline = time.monotonic() + 300
                while not seen and time.monotonic() < deadline:
                    time.sleep(0.05)
            first = seen[0] if seen else float("nan")
        finally:
            daemon.stop()
    return {
        "outage_to_reconnect_s": round(recovered - back, 2),
        "outage_to_first_publish_s": round(first - back, 2),
        "outage_reconnect_to_first_publish_s": round(first - recovered, 2),
    }


def settings(seconds: float) -> dict[str, object]:
    up = UplinkConfig()
    return {
        "outage_s": seconds,
        "devices": DEVICES,
        "reading_every_s": EVERY_S,
        "uplink": "defaults",
        "batch_window": up.batch_window,
        "resume_delay": up.resume_delay,
        "reconnect": f"{up.reconnect_min:g} s doubling to {up.reconnect_max:g} s, +-20 %",
        "broker": "mosquitto without persistence (our session is lost)",
    }


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    seconds = OUTAGE_S[mode]
    with tempfile.TemporaryDirectory() as cache_dir:
        runs = repeat(repeats, lambda: outage(seconds, Path(cache_dir)))
    return collect(runs, settings(seconds), DOCS)


if __name__ == "__main__":
    # `python -m bench.outage [--quick|--smoke]`: one outage, the figures as one JSON line.
    mode: Mode = "quick" if "--quick" in sys.argv else "smoke" if "--smoke" in sys.argv else "full"
    with tempfile.TemporaryDirectory() as cache_dir:
        print(json.dumps(outage(OUTAGE_S[mode], Path(cache_dir))), flush=True)
