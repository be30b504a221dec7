"""Bytes on the wire per reading, MQTT and HTTP, plain TCP and TLS, measured on the socket.

The gateway's uplink (the real session, fiware-json) sends through a counting relay on loopback
(tests.relay): every byte the gateway writes and reads on its socket counts, both directions,
TCP payload only (IP and TCP headers, ~40-60 bytes a segment, come on top). MQTT: QoS 1
PUBLISH + PUBACK to mosquitto. HTTP: POST + the agent's answer on its south port. TLS: a
TLS-terminating relay (TLS 1.3, P-256 certificate) behind the counting one, so the figure has
the records' overhead. Connection setup (CONNECT, subscribe, birth / the HEAD probe, the TLS
handshake) is measured apart and not in the per-reading figure.

Data: 6 devices, 4 paddy probes (water level 0.1 cm, water temperature 0.1 degC) and 2 weather
stations (air temperature 0.1 degC, humidity 1 %), a sample every 10 s with noise at the
sensor's resolution, short attribute names as a city maps them; a 60 s batch window (the
default): each window's 72 readings go out as one lease, one message per device.
Peer: the real IoT Agent JSON (in .peers) with mosquitto and the context broker stub when
installed, else mosquitto and a stub that answers with the agent's exact answer bytes.

Each payload format's bytes per reading, computed from the encoders on a realistic day:
bench/formats.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from bench.figures import Doc, Figure, Mode, collect, repeat
from gateway.config.loader import TlsConfig, UplinkConfig
from gateway.demo.broker import LocalBroker
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink
from tests import certs
from tests.relay import Relay

# Byte counts do not depend on the machine's load: one repeat is the default.
REPEATS = 1
WINDOWS: dict[Mode, int] = {"smoke": 2, "quick": 10, "full": 10}
SAMPLE_S = 10
WINDOW_S = 60
APIKEY = "benchkey"
NAMES = {"water_level": "wl", "water_temperature": "wt", "air_temperature": "t", "humidity": "h"}
DEVICES = {f"paddy-{i}": ("water_level", "water_temperature") for i in range(1, 5)} | {
    f"weather-{i}": ("air_temperature", "humidity") for i in range(1, 3)
}
# What the IoT Agent 3.14.0 (Express) answers a measure with, byte for byte but the date.
AGENT_ANSWER = (
    b"HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nX-Processing-Time: 8\r\n"
    b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n"
    b'ETag: W/"2-vyGp6PvFo4RvsFtPoIWeCReyIC8"\r\nDate: Tue, 01 Dec 2026 00:57:31 GMT\r\n'
    b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n{}"
)


def readings(windows: int) -> Iterator[list[Reading]]:
    """One list of readings per batch window, values with noise at sensor resolution."""
    rng = random.Random(7)
    level = {d: 4.0 + i for i, d in enumerate(DEVICES)}
    seq = 1
    t0 = 1.8e9
    for w in range(windows):
        batch = []
        for k in range(WINDOW_S // SAMPLE_S):
            ts = t0 + w * WINDOW_S + k * SAMPLE_S
            for device, quantities in DEVICES.items():
                level[device] += rng.gauss(0, 0.05)
                values = {
                    "water_level": round(level[device], 1),
                    "water_temperature": round(22.0 + rng.gauss(0, 0.15), 1),
                    "air_temperature": round(27.5 + rng.gauss(0, 0.2), 1),
                    "humidity": round(68 + rng.gauss(0, 1.5)),
                }
                for q in quantities:
                    batch.append(Reading(seq, device, q, values[q], "", ts, True, Lane.TELEMETRY))
                    seq += 1
        yield batch


async def _agent_stub_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            answer = AGENT_ANSWER
            if head.startswith(b"HEAD"):
                answer = answer.replace(b"200 OK", b"400 Bad Request")[:-2]
            writer.write(answer)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def peers(work: Path) -> AsyncIterator[tuple[int, int, str]]:
    """(mqtt port, agent http port, which peer)."""
    try:
        from tests.iotagent import run_city

        city_gen = run_city(work / "city")
        city = next(city_gen)
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        with LocalBroker(work / "broker") as broker:
            server = await asyncio.start_server(_agent_stub_serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                yield broker.port, port, f"mosquitto + a stub with the agent's answer ({exc})"
            finally:
                server.close()
        return
    try:
        city.agent.provision_group(APIKEY)
        yield city.broker.port, city.agent.http_port, "mosquitto + the real IoT Agent JSON 3.14.0"
    finally:
        with contextlib.suppress(StopIteration):
            next(city_gen)


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: self if name == "bind" else None


async def measure(cfg: UplinkConfig, relay: Relay, work: Path, windows: int) -> dict[str, float]:
    log = structlog.wrap_logger(structlog.ReturnLogger())
    async with Outbox.open(work / f"o-{cfg.transport}-{relay.port}.sqlite", log=log) as outbox:
        uplink = Uplink(
            cfg, "gw1", outbox, CommandRouter(cfg.commands, log=log), attributes=_names(), log=log
        )
        task = asyncio.create_task(uplink.run())
        try:
            async with asyncio.timeout(60):
                while not uplink.stats.connected:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # the birth / subscription settle
                setup = relay.bytes
                n = 0
                for batch in readings(windows):
                    await outbox.append(batch)
                    n += len(batch)
                    while outbox.rows:
                        await asyncio.sleep(0.005)
                await asyncio.sleep(0.1)  # the last answer's bytes are counted
            per_reading = (relay.bytes - setup) / n
        finally:
            await uplink.stop(2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return {
        "per_reading": round(per_reading, 1),
        "setup": setup,
        "connections": relay.connections,
        "messages": uplink.stats.published_messages,
        "readings": n,
    }


def _names() -> dict[tuple[str, str], str]:
    return {(d, q): NAMES[q] for d, qs in DEVICES.items() for q in qs}


def _tls(work: Path) -> tuple[ssl.SSLContext, str]:
    ca, ca_key, ca_path = certs.make_ca(work, "ca")
    crt, key = certs.issue(work, "peer", ca, ca_key, server=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(crt, key)
    return server, ca_path


async def _run(work: Path, windows: int) -> dict[str, Any]:
    server_tls, ca = _tls(work)
    base = UplinkConfig(
        host="127.0.0.1",
        format="fiware-json",
        apikey=APIKEY,
        client_id="bench-wire",
        status_topic="gateway/gw1/status",
        batch_window=0.0,  # the bench appends one 60 s window at a time
        reconnect_min=0.05,
        reconnect_max=0.5,
        commands=(),
    )
    results: dict[str, dict[str, float]] = {}
    async with peers(work) as (mqtt_port, http_port, peer):
        for transport, peer_port in (("mqtt", mqtt_port), ("http", http_port)):
            for secure in (False, True):
                async with contextlib.AsyncExitStack() as stack:
                    upstream = peer_port
                    if secure:
                        terminator = Relay(peer_port, tls=server_tls)
                        upstream = (await stack.enter_async_context(terminator)).port
                    relay = await stack.enter_async_context(Relay(upstream))
                    scheme = "https" if secure else "http"
                    cfg = replace(
                        base,
                        port=relay.port,
                        transport=transport,
                        url=f"{scheme}://127.0.0.1:{relay.port}/iot/json",
                        tls=TlsConfig(ca=ca) if secure and transport == "mqtt" else base.tls,
                    )
                    if secure and transport == "http":
                        cfg = replace(cfg, tls=TlsConfig(ca=ca))
                    results[f"{transport}{'_tls' if secure else ''}"] = await measure(
                        cfg, relay, work, windows
                    )
    return {"peer": peer, **results}


DOCS = {
    "wire_mqtt_bytes_per_reading": Doc("QoS 1: PUBLISH + PUBACK"),
    "wire_mqtt_tls_bytes_per_reading": Doc("the same over TLS 1.3"),
    "wire_http_bytes_per_reading": Doc('`transport = "http"`: POST + the agent\'s answer'),
    "wire_http_tls_bytes_per_reading": Doc("HTTPS, connection kept alive"),
    "wire_http_tls_new_connection_each_window_bytes_per_reading": Doc(
        "HTTPS when the agent closes idle connections, after 5 s: a handshake per window"
    ),
    "wire_mqtt_setup_bytes": Doc("once per MQTT connection: CONNECT, subscribe, birth"),
    "wire_mqtt_tls_setup_bytes": Doc("the same over TLS 1.3, the handshake included"),
    "wire_http_setup_bytes": Doc("once per HTTP connection: the HEAD probe"),
    "wire_http_tls_setup_bytes": Doc("the same over HTTPS, the handshake included"),
}


def _once(windows: int, peer: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(_run(Path(tmp), windows))
    peer.append(r["peer"])
    per_window = len(next(readings(1)))
    figures: dict[str, float] = {}
    for name in ("mqtt", "mqtt_tls", "http", "http_tls"):
        m = r[name]
        figures[f"wire_{name}_bytes_per_reading"] = m["per_reading"]
        figures[f"wire_{name}_setup_bytes"] = m["setup"]
        figures[f"wire_{name}_connections"] = m["connections"]
    # The agent (Node) drops an idle keep-alive connection after 5 s: with a 60 s window each
    # window opens a new one; over TLS that is one handshake per window.
    for name in ("mqtt", "http"):
        handshake = r[f"{name}_tls"]["setup"] - r[name]["setup"]
        figures[f"wire_{name}_tls_handshake_bytes"] = handshake
    figures["wire_http_tls_new_connection_each_window_bytes_per_reading"] = round(
        r["http_tls"]["per_reading"] + figures["wire_http_tls_handshake_bytes"] / per_window, 1
    )
    return figures


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    windows = WINDOWS[mode]
    peers: list[str] = []
    runs = repeat(repeats, lambda: _once(windows, peers))
    settings = {
        "peer": " / ".join(sorted(set(peers))),
        "devices": len(DEVICES),
        "readings_per_window": len(next(readings(1))),
        "window_s": WINDOW_S,
        "sample_s": SAMPLE_S,
        "windows": windows,
        "format": "fiware-json",
        "counted": "bytes written + read on the gateway's socket, TCP payload, loopback",
    }
    return collect(runs, settings, DOCS)
