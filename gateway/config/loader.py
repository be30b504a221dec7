"""TOML -> typed, frozen configuration, parsed once at the edge.

Every problem is reported with its path and the offending value
(`uplink.port: expected 1..65535, got 70000`); unknown keys get a "did you mean" hint.
The `[uplink]` table is read by gateway.config.uplink (its types are re-exported here).
Drivers parse their own bus and device keys (gateway.contract); nothing downstream sees a dict.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.alerts import config as alertconfig
from gateway.alerts.config import AlertsConfig
from gateway.config.names import name_problem
from gateway.config.profiles import ProfileLibrary, default_dirs
from gateway.config.uplink import (
    BUILTIN_COMMANDS,
    FORMATS,
    TRANSPORTS,
    TlsConfig,
    UplinkConfig,
    parse_uplink,
)
from gateway.contract import BusConfig, DeviceConfig
from gateway.errors import ConfigError, Problem
from gateway.model import Value
from gateway.registry import driver_for_transport, known_transports
from gateway.section import Section

DEFAULT_PATH = Path("/etc/gateway/gateway.toml")
DROP_POLICIES = ("oldest-telemetry", "newest-telemetry")


@dataclass(frozen=True)
class SiteConfig:
    id: str
    name: str = ""
    latitude: float | None = None
    longitude: float | None = None
    timezone: str = "Asia/Tokyo"
    profile_dirs: tuple[str, ...] = ()
    trust_clock: bool = False


@dataclass(frozen=True)
class StoreConfig:
    path: str = "/var/lib/gateway/outbox.sqlite"
    sync: str = "full"
    max_rows: int = 5_000_000
    max_bytes: int = 1 << 30
    drop_policy: str = "oldest-telemetry"
    memory_rows: int = 100_000
    # The thinning policy (gateway.outbox.averaging): over this many rows waiting, telemetry is
    # averaged over `average_seconds` per sensor quantity; 0 is off.
    average_above: int = 0
    average_seconds: float = 60.0
    # status.json lives here, off the data disk: a full disk cannot stop it (RuntimeDirectory=).
    runtime_dir: str = "/run/gateway"


@dataclass(frozen=True)
class Config:
    site: SiteConfig
    uplink: UplinkConfig
    store: StoreConfig
    buses: tuple[BusConfig, ...] = ()
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    def devices(self) -> list[DeviceConfig]:
        return [d for b in self.buses for d in b.devices]


def load(path: str | Path, profiles: ProfileLibrary | None = None) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(p), f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                Problem(
                    str(p),
                    f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line {line} "
                    "(save the file as UTF-8)",
                )
            ]
        ) from None
    return parse(text, str(p), profiles)


def parse(
    text: str,
    where: str = "<config>",
    profiles: ProfileLibrary | None = None,
    *,
    defaults: dict[str, dict[str, object]] | None = None,
) -> Config:
    """The config in `text`; raises ConfigError listing every problem. `defaults`, when
    given, receives every default used, by table path (gateway.section.Section)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(where, f"not valid TOML: {exc}")]) from None
    if not raw:
        # One problem, not one per missing key: nothing was written yet.
        message = 'empty (or only comments); a config needs at least [gateway] id = "..."'
        raise ConfigError([Problem(where, message)])
    problems: list[Problem] = []
    root = Section(raw, "", problems, defaults)
    site = _site(root.section("gateway", required=True))
    library = profiles or ProfileLibrary(default_dirs(site.profile_dirs))
    uplink = parse_uplink(root.section("uplink"), site.id)
    store = _store(root.section("store"))
    bus_sections = root.sections("buses")
    buses = tuple(_bus(s, library) for s in bus_sections)
    _unique(
        [
            (f"{s.at('devices')}[{j}].id", d.id)
            for s, b in zip(bus_sections, buses, strict=True)
            for j, d in enumerate(b.devices)
        ],
        "device id",
        problems,
    )
    _unique(
        [(s.at("name"), b.name) for s, b in zip(bus_sections, buses, strict=True)],
        "bus name",
        problems,
    )
    if uplink.format.startswith("fiware"):
        _orion_names(bus_sections, buses, problems)
    alerts = alertconfig.parse(root.section("alerts"), {d.id for b in buses for d in b.devices})
    root.finish()
    if problems:
        raise ConfigError(problems)
    return Config(site, uplink, store, buses, where, alerts=alerts)


def _unique(named: list[tuple[str, str]], what: str, problems: list[Problem]) -> None:
    """A problem at each repeat of a name, pointing back at its first place ((path, name))."""
    first: dict[str, str] = {}
    for path, name in named:
        if not name:
            continue  # missing: already reported as required
        if name in first:
            problems.append(Problem(path, f'duplicate {what} "{name}" (first at {first[name]})'))
        first.setdefault(name, path)


def _orion_names(
    sections: list[Section], buses: tuple[BusConfig, ...], problems: list[Problem]
) -> None:
    """FIWARE formats: device ids and attribute names become Orion entity ids and attribute
    names, and Orion refuses every update naming one it does not take (gateway.config.names)."""
    for s, bus in zip(sections, buses, strict=True):
        for j, d in enumerate(bus.devices):
            at = f"{s.at('devices')}[{j}]"
            why = name_problem(d.id)
            if d.id and _is_topic_safe(d.id) and why:  # else reported already
                problems.append(Problem(f"{at}.id", f'"{d.id}": {why}'))
            named = dict(d.decoder.attributes) if d.decoder is not None else {}
            for quantity, attr in {**named, **d.attributes}.items():
                why = name_problem(attr)
                if why is None:
                    continue
                if quantity in d.attributes:
                    problems.append(Problem(f"{at}.attributes.{quantity}", f'"{attr}": {why}'))
                else:
                    problems.append(
                        Problem(
                            f"{at}.profile",
                            f'profile "{d.profile}" names {quantity} "{attr}": {why}',
                        )
                    )


def _site(s: Section) -> SiteConfig:
    site = SiteConfig(
        id=s.text("id"),
        name=s.text("name", ""),
        latitude=s.number("latitude", None, lo=-90, hi=90),
        longitude=s.number("longitude", None, lo=-180, hi=180),
        timezone=s.text("timezone", "Asia/Tokyo"),
        profile_dirs=s.strings("profile_dirs", ()),
        trust_clock=s.flag("trust_clock", False),
    )
    if site.id and not _is_topic_safe(site.id):
        s.problem("id", f"must not contain '/', '+', '#' or spaces, got \"{site.id}\"")
    s.finish()
    return site


def _is_topic_safe(name: str) -> bool:
    return not any(c in name for c in "/+# \t")


def _store(s: Section) -> StoreConfig:
    cfg = StoreConfig(
        path=s.text("path", StoreConfig.path),
        sync=s.text("sync", "full", choices=("full", "normal")),
        max_rows=s.integer("max_rows", StoreConfig.max_rows, lo=100),
        max_bytes=s.integer("max_bytes", StoreConfig.max_bytes, lo=64 * 1024),
        drop_policy=s.text("drop_policy", "oldest-telemetry", choices=DROP_POLICIES),
        memory_rows=s.integer("memory_rows", StoreConfig.memory_rows, lo=100),
        average_above=s.integer("average_above", 0, lo=0),
        average_seconds=s.number("average_seconds", 60.0, lo=1.0, hi=86400.0),
        runtime_dir=s.text("runtime_dir", StoreConfig.runtime_dir),
    )
    if 0 < cfg.average_above < 100:
        s.problem("average_above", f"must be 0 (off) or at least 100 rows, got {cfg.average_above}")
    elif cfg.average_above >= cfg.max_rows:
        s.problem(
            "average_above",
            f"must be below max_rows ({cfg.max_rows}), got {cfg.average_above}: the outbox "
            "would drop its oldest telemetry before averaging began",
        )
    if not cfg.runtime_dir:
        s.problem("runtime_dir", "must name a directory (default /run/gateway)")
    s.finish()
    return cfg


def _param(v: Any) -> Value:
    if isinstance(v, bool | int | float | str):
        return v
    raise TypeError(v)


def _bus(s: Section, library: ProfileLibrary) -> BusConfig:
    name = s.text("name")
    transport = s.text("transport")
    driver = driver_for_transport(transport) if transport else None
    if transport and driver is None:
        s.problem(
            "transport",
            f'unknown transport "{transport}"; known: {", ".join(known_transports())}',
        )
    options = driver.parse_bus(s, transport) if driver else None
    if driver is None:
        # Without a driver nobody can read its keys: one problem (the transport), not one
        # "unknown key" per bus and device key the driver would have read.
        s.ignore(*(k for k in s.raw if k != "devices"))
    devices = []
    for d in s.sections("devices"):
        device = DeviceConfig(
            id=d.text("id"),
            profile=d.text("profile", ""),
            name=d.text("name", ""),
            latitude=d.number("latitude", None, lo=-90, hi=90),
            longitude=d.number("longitude", None, lo=-180, hi=180),
            interval=d.number("interval", 60.0, lo=0.0),
            params=d.mapping("params", _param, "a number, string or boolean"),
            attributes=d.mapping("attributes", str, "a string"),
        )
        if device.id and not _is_topic_safe(device.id):
            d.problem("id", f"must not contain '/', '+', '#' or spaces, got \"{device.id}\"")
        decoder = None
        if device.profile:
            profile = library.get(device.profile, s.problems, d.at("profile"))
            decoder = profile.decoder if profile else None
            protocols = getattr(driver, "PROTOCOLS", ()) if driver else ()
            if profile and driver and profile.protocol not in protocols:
                d.problem(
                    "profile",
                    f'"{device.profile}" is a {profile.protocol} profile; transport '
                    f'"{transport}" decodes {", ".join(protocols) or "no profiles"}',
                )
        device_options = driver.parse_device(d, transport, decoder) if driver else None
        if driver is None:
            d.ignore(*d.raw)  # the driver's device keys: see the bus's keys above
        d.finish()
        devices.append(_with_decoder(replace(device, options=device_options), decoder))
    s.finish()
    return BusConfig(name, transport, tuple(devices), options)


def _with_decoder(device: DeviceConfig, decoder: Any) -> DeviceConfig:
    from dataclasses import replace

    return replace(device, decoder=decoder) if decoder is not None else device


__all__ = [
    "BUILTIN_COMMANDS",
    "DEFAULT_PATH",
    "FORMATS",
    "TRANSPORTS",
    "Config",
    "SiteConfig",
    "StoreConfig",
    "TlsConfig",
    "UplinkConfig",
    "load",
    "parse",
]
