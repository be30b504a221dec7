"""The `[uplink]` table: where and how readings leave (MQTT or the IoT Agent's HTTP port).

`parse_uplink` reads it into a frozen UplinkConfig, every problem with its path; the HTTP
transport's own checks (`url` and the keys that do not apply) live here too. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from gateway.section import Section

FORMATS = ("fiware-json", "fiware-ul", "json", "msgpack")
BUILTIN_COMMANDS = ("ping", "reload")
TRANSPORTS = ("mqtt", "http")
HTTP_PATH = "/iot/json"  # the IoT Agent JSON's default measure resource
# What the url names instead with transport = "http" (host, port) or what HTTP has no use for.
MQTT_ONLY = ("host", "port", "client_id", "qos", "status_topic", "username", "password_file")


@dataclass(frozen=True)
class TlsConfig:
    ca: str = ""
    cert: str = ""
    key: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.ca or self.cert)


@dataclass(frozen=True)
class UplinkConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    keepalive: int = 600
    qos: int = 1
    format: str = "fiware-json"
    apikey: str = "gateway"
    topic_prefix: str = "gateway"
    status_topic: str = ""
    username: str = ""
    password_file: str = ""
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_window: float = 60.0
    batch_max_readings: int = 1000
    max_payload_bytes: int = 65536
    rate_limit: int = 0
    inflight: int = 20
    reconnect_min: float = 5.0
    reconnect_max: float = 300.0
    resume_delay: float = 10.0  # s after a broker lost our session; why: gateway.uplink.resume
    commands: tuple[str, ...] = BUILTIN_COMMANDS
    command_max_bytes: int = 4096  # a platform command larger than this is refused unparsed
    enabled: bool = True
    # "http": measures go to the IoT Agent's south port at `url` (host and port come from it)
    # and a row leaves the outbox on the agent's 2xx; `request_timeout` bounds each answer.
    transport: str = "mqtt"
    url: str = ""
    request_timeout: float = 30.0


def parse_uplink(s: Section, site_id: str) -> UplinkConfig:
    """The `[uplink]` table (every problem recorded on `s` with its path)."""
    tls_s = s.section("tls")
    tls = TlsConfig(ca=tls_s.text("ca", ""), cert=tls_s.text("cert", ""), key=tls_s.text("key", ""))
    if tls.cert and not tls.key:
        tls_s.problem("key", "a client certificate needs its key")
    tls_s.finish()
    reconnect_min, reconnect_max = s.backoff(5.0, 300.0)
    cfg = UplinkConfig(
        host=s.text("host", "127.0.0.1"),
        port=s.integer("port", 8883 if tls.enabled else 1883, lo=1, hi=65535),
        client_id=s.text("client_id", "") or f"gateway-{site_id}",
        keepalive=s.integer("keepalive", 600, lo=10, hi=65535),
        qos=s.integer("qos", 1, lo=0, hi=1),
        format=s.text("format", "fiware-json", choices=FORMATS),
        apikey=s.text("apikey", "gateway"),
        topic_prefix=s.text("topic_prefix", "gateway"),
        status_topic=s.text("status_topic", "") or f"gateway/{site_id}/status",
        username=s.text("username", ""),
        password_file=s.text("password_file", ""),
        tls=tls,
        batch_window=s.number("batch_window", 60.0, lo=0, hi=86400),
        batch_max_readings=s.integer("batch_max_readings", 1000, lo=1, hi=100_000),
        max_payload_bytes=s.integer("max_payload_bytes", 65536, lo=256, hi=256 * 1024 * 1024),
        rate_limit=s.integer("rate_limit", 0, lo=0),
        inflight=s.integer("inflight", 20, lo=1, hi=65535),
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
        resume_delay=s.number("resume_delay", UplinkConfig.resume_delay, lo=0, hi=3600),
        commands=s.strings("commands", BUILTIN_COMMANDS),
        command_max_bytes=s.integer("command_max_bytes", 4096, lo=64, hi=1 << 20),
        enabled=s.flag("enabled", True),
        transport=s.text("transport", "mqtt", choices=TRANSPORTS),
        url=s.text("url", ""),
        request_timeout=s.number("request_timeout", 30.0, lo=1, hi=600),
    )
    if cfg.password_file and not cfg.username:
        s.problem("username", "password_file is set but username is missing")
    cfg = _http(s, cfg) if cfg.transport == "http" else cfg
    for key in ("url", "request_timeout"):
        if cfg.transport == "mqtt" and s.has(key):
            s.problem(key, 'used with transport = "http" only')
    s.finish()
    return cfg


def _http(s: Section, cfg: UplinkConfig) -> UplinkConfig:
    """The HTTP transport's checks; host and port come from `url` (path default /iot/json)."""
    for key in MQTT_ONLY:
        if s.has(key):
            s.problem(key, 'not used with transport = "http" (the url names the endpoint)')
    if cfg.format != "fiware-json":
        s.problem("format", f'transport = "http" needs format = "fiware-json", got "{cfg.format}"')
    if not cfg.url:
        s.problem("url", 'required with transport = "http" (https://host:7896/iot/json)')
        return cfg
    try:
        url = urlsplit(cfg.url)
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError as exc:
        s.problem("url", f'not a usable URL ({exc}): "{cfg.url}"')
        return cfg
    checks = (
        (url.scheme not in ("http", "https"), "the scheme must be http or https"),
        (not url.hostname, "it names no host"),
        (url.username is not None, "user:password@ is not supported"),
        (bool(url.query), "leave out the query: the apikey and device id are added to it"),
        (bool(url.fragment), "leave out the #fragment"),
        (cfg.tls.enabled and url.scheme != "https", "[uplink.tls] is set but it is not https"),
    )
    why = next((message for broken, message in checks if broken), None)
    if why:
        s.problem("url", f'{why}: "{cfg.url}"')
        return cfg
    path = url.path if url.path not in ("", "/") else HTTP_PATH
    full = f"{url.scheme}://{url.netloc}{path}"
    return replace(cfg, host=url.hostname or "", port=port, url=full)
