"""The real FIWARE IoT Agent JSON 3.14.0 in front of a Context Broker stub, for tests.

`ContextBroker` is a small NGSI-v2 server of ours (a thread on a free loopback port) that keeps
entities, records every update the agent makes and refuses what Orion refuses: string values
(also nested in objects and arrays, and in metadata) containing any of `< > " ' = ; ( )`, and
entity ids, types and attribute names with those or whitespace, `?`, `/`, `#`, `&` (400
BadRequest, "Invalid characters in ..."). `IotAgent` runs the agent's unmodified release
(`node bin/iotagent-json`, in-memory registry) against it and a mosquitto broker, and
provisions through the agent's north API as a city would.

The agent is installed by `.ci/setup` into `.peers/iotagent-json-3.14.0` (or the directory in
`GATEWAY_IOTAGENT_DIR`). A missing Node.js or agent raises, so the test fails: never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.demo.broker import LocalBroker, free_port

ROOT = Path(__file__).resolve().parent.parent
AGENT_DIR = Path(os.environ.get("GATEWAY_IOTAGENT_DIR", ROOT / ".peers" / "iotagent-json-3.14.0"))
SERVICE = "smartfarm"
SERVICE_PATH = "/paddies"
FORBIDDEN_VALUE = set("<>\"'=;()")  # Orion: "Invalid characters in attribute value"
FORBIDDEN_NAME = FORBIDDEN_VALUE | set(" \t\n?/#&")  # ids, types, attribute names


def _bad_string(value: Any) -> bool:
    """A string anywhere inside `value` that Orion refuses."""
    if isinstance(value, str):
        return any(c in FORBIDDEN_VALUE for c in value)
    if isinstance(value, dict):
        return any(_bad_string(v) for v in value.values())
    if isinstance(value, list):
        return any(_bad_string(v) for v in value)
    return False


def _bad_name(name: Any) -> bool:
    return not isinstance(name, str) or not name or any(c in FORBIDDEN_NAME for c in name)


@dataclass
class Update:
    """One entity as one request carried it (an `/v2/op/update` holds several)."""

    entity: str
    attrs: dict[str, Any]  # name -> {"type", "value", "metadata"}
    at: float  # time.monotonic() when it was applied

    def value(self, name: str) -> Any:
        return self.attrs[name]["value"] if name in self.attrs else None

    def time_instant(self) -> str | None:
        t = self.attrs.get("TimeInstant")
        return t["value"] if t else None


@dataclass
class Refusal:
    path: str
    body: Any
    reason: str


@dataclass
class BrokerState:
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[Update] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # requests the stub does not serve


class ContextBroker:
    """`with ContextBroker() as cb:` ... `cb.port`, `cb.updates_of(entity)`, `cb.refusals`."""

    def __init__(self) -> None:
        self.state = BrokerState()
        self.lock = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ContextBroker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests read -------------------------------------------------------------------
    def updates_of(self, entity: str) -> list[Update]:
        with self.lock:
            return [u for u in self.state.updates if u.entity == entity]

    @property
    def refusals(self) -> list[Refusal]:
        with self.lock:
            return list(self.state.refusals)

    def entity(self, entity: str) -> dict[str, Any]:
        with self.lock:
            copy: dict[str, Any] = json.loads(json.dumps(self.state.entities.get(entity, {})))
            return copy

    def attr(self, entity: str, name: str) -> Any:
        a = self.entity(entity).get(name)
        return a["value"] if a else None

    def wait(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"context broker: condition not met in {timeout:g} s; "
                        f"{len(self.state.updates)} updates, refusals: {self.state.refusals[-3:]}"
                    )
                self.lock.wait(min(left, 0.2))

    # -- NGSI-v2 ---------------------------------------------------------------------------
    def _check(self, entities: list[dict[str, Any]]) -> str | None:
        for e in entities:
            if _bad_name(e.get("id")) or _bad_name(e.get("type", "Thing")):
                return "Invalid characters in entity id or type"
            for name, attr in e.items():
                if name in ("id", "type"):
                    continue
                if _bad_name(name):
                    return "Invalid characters in attribute name"
                if isinstance(attr, dict):
                    if _bad_string(attr.get("value")):
                        return "Invalid characters in attribute value"
                    if _bad_string(attr.get("metadata", {})):
                        return "Invalid characters in metadata value"
                elif _bad_string(attr):
                    return "Invalid characters in attribute value"
        return None

    def _apply(self, entities: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        with self.lock:
            for e in entities:
                attrs = {k: v for k, v in e.items() if k not in ("id", "type")}
                stored = self.state.entities.setdefault(e["id"], {})
                stored.update(attrs)
                self.state.updates.append(Update(e["id"], attrs, now))
            self.lock.notify_all()

    def _refuse(self, path: str, body: Any, reason: str) -> None:
        with self.lock:
            self.state.refusals.append(Refusal(path, body, reason))
            self.lock.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        broker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                return json.loads(raw) if raw else None

            def _reply(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _update(self, path: str, entities: list[dict[str, Any]]) -> None:
                reason = broker._check(entities)
                if reason:
                    broker._refuse(path, entities, reason)
                    self._reply(400, {"error": "BadRequest", "description": reason})
                    return
                broker._apply(entities)
                self._reply(204)

            def do_GET(self) -> None:
                if self.path.startswith("/version"):
                    self._reply(200, {"orion": {"version": "3.10.1-stub"}})
                    return
                broker.state.unknown.append(f"GET {self.path}")
                self._reply(404, {"error": "NotFound", "description": "not served by the stub"})

            def do_POST(self) -> None:
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/v2/entities":
                    self._update(path, [body])
                elif path == "/v2/op/update":
                    self._update(path, list(body.get("entities", [])))
                elif path.startswith("/v2/entities/") and path.endswith("/attrs"):
                    entity = path.split("/")[3]
                    self._update(path, [{"id": entity, **body}])
                elif path == "/v2/registrations":
                    rid = f"{len(broker.state.updates):024x}"
                    self._reply(201, headers={"Location": f"/v2/registrations/{rid}"})
                else:
                    broker.state.unknown.append(f"POST {self.path}")
                    self._reply(404, {"error": "NotFound", "description": "not served"})

            def do_PATCH(self) -> None:
                body = self._body()
                path = self.path.split("?")[0]
                if path.startswith("/v2/entities/") and path.endswith("/attrs"):
                    self._update(path, [{"id": path.split("/")[3], **body}])
                else:
                    broker.state.unknown.append(f"PATCH {self.path}")
                    self._reply(404, {"error": "NotFound", "description": "not served"})

            def do_DELETE(self) -> None:
                self._reply(204)

        return Handler


def _node() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise FileNotFoundError("Node.js is not installed (Debian: apt-get install -y nodejs npm)")
    if (
        not (AGENT_DIR / "bin" / "iotagent-json").exists()
        or not (AGENT_DIR / "node_modules").is_dir()
    ):
        raise FileNotFoundError(
            f"the FIWARE IoT Agent is not installed in {AGENT_DIR}: run .ci/setup"
        )
    return node


class IotAgent:
    """The agent process; `north(method, path, body)` calls its north API with the service
    headers; `measure_http(apikey, device, body)` posts to its south HTTP port."""

    def __init__(self, mqtt_port: int, cb_port: int, workdir: Path) -> None:
        self.node = _node()
        self.north_port = free_port()
        self.http_port = free_port()
        self.mqtt_port = mqtt_port
        self.cb_port = cb_port
        self.log_path = workdir / "iotagent.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "IOTA_REGISTRY_TYPE": "memory",
            "IOTA_CB_HOST": "127.0.0.1",
            "IOTA_CB_PORT": str(self.cb_port),
            "IOTA_CB_NGSI_VERSION": "v2",
            "IOTA_NORTH_HOST": "127.0.0.1",
            "IOTA_NORTH_PORT": str(self.north_port),
            "IOTA_PROVIDER_URL": f"http://127.0.0.1:{self.north_port}",
            "IOTA_MQTT_HOST": "127.0.0.1",
            "IOTA_MQTT_PORT": str(self.mqtt_port),
            "IOTA_HTTP_HOST": "127.0.0.1",
            "IOTA_HTTP_PORT": str(self.http_port),
            "IOTA_AMQP_DISABLED": "true",
            "IOTA_TIMESTAMP": "true",
            "IOTA_LOG_LEVEL": "INFO",
        }

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.node, "bin/iotagent-json"],
                cwd=AGENT_DIR,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the IoT Agent exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.north_port}/iot/about", timeout=2
                ):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise TimeoutError(f"the IoT Agent did not answer in 60 s: {self.log_tail()}")
        self.wait_mqtt()

    def wait_mqtt(self, timeout: float = 30.0) -> None:
        """Until the agent's log says it is subscribed (it subscribes after connecting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "MQTT Client connected" in self.log_tail(20000):
                time.sleep(0.3)  # its subscriptions follow the connect at once
                return
            time.sleep(0.1)
        raise TimeoutError(f"the IoT Agent did not connect to MQTT: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    # -- APIs ------------------------------------------------------------------------------
    def north(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.north_port}{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "fiware-service": SERVICE,
                "fiware-servicepath": SERVICE_PATH,
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode("utf-8", "replace")

    def provision_group(
        self,
        apikey: str,
        entity_type: str = "Thing",
        attributes: list[dict[str, str]] | None = None,
    ) -> None:
        """A service group for `apikey`; `attributes` apply to every device of the group."""
        status, body = self.north(
            "POST",
            "/iot/services",
            {
                "services": [
                    {
                        "apikey": apikey,
                        "cbroker": f"http://127.0.0.1:{self.cb_port}",
                        "entity_type": entity_type,
                        "resource": "/iot/json",
                        "timestamp": True,
                        "attributes": attributes or [],
                    }
                ]
            },
        )
        assert status == 201, (status, body)

    def provision_device(
        self,
        device: str,
        apikey: str,
        *,
        entity: str | None = None,
        entity_type: str = "Thing",
        attributes: list[dict[str, str]] | None = None,
        commands: list[str] | None = None,
        transport: str = "MQTT",
    ) -> str:
        """Provision `device` (entity name defaults to `urn:ngsi-ld:<type>:<device>`);
        returns the entity id."""
        entity = entity or f"urn:ngsi-ld:{entity_type}:{device}"
        status, body = self.north(
            "POST",
            "/iot/devices",
            {
                "devices": [
                    {
                        "device_id": device,
                        "entity_name": entity,
                        "entity_type": entity_type,
                        "apikey": apikey,
                        "transport": transport,
                        "timestamp": True,
                        "attributes": attributes or [],
                        "commands": [{"name": c, "type": "command"} for c in commands or []],
                    }
                ]
            },
        )
        assert status == 201, (status, body)
        return entity

    def send_command(self, entity: str, entity_type: str, name: str, value: Any) -> int:
        """What Orion does when a client updates a command attribute: forward the update
        to the agent (the registered context provider). Returns the agent's HTTP status."""
        status, body = self.north(
            "POST",
            "/v2/op/update",
            {
                "actionType": "update",
                "entities": [
                    {"id": entity, "type": entity_type, name: {"type": "command", "value": value}}
                ],
            },
        )
        return status

    def measure_http(self, apikey: str, device: str, body: Any) -> tuple[int, str]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/iot/json?k={apikey}&i={device}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")


@dataclass
class City:
    """A running city platform: a mosquitto broker, the context broker stub and the IoT Agent
    subscribed to that broker."""

    broker: LocalBroker
    cb: ContextBroker
    agent: IotAgent


def run_city(workdir: Path, *, persistence: bool = False) -> Iterator[City]:
    """Generator for a fixture: starts broker, context broker and agent; stops all three.
    `persistence`: a broker that keeps sessions over its restart."""
    with LocalBroker(workdir / "broker", persistence=persistence) as broker, ContextBroker() as cb:
        agent = IotAgent(broker.port, cb.port, workdir)
        try:
            agent.start()
            yield City(broker, cb, agent)
        finally:
            agent.stop()
