"""`gateway config [-c FILE] [--json]`: the effective configuration, secrets masked.

Loads the file as the daemon would (a bad config prints every problem and exits 78, like
`gateway check`) and prints it back as TOML (or one JSON object with `--json`) with every
default filled in: [gateway], [uplink] (with the derived client_id, status_topic and port),
[uplink.tls], [store], each device's common keys (name, interval, params, attributes, ...),
[alerts.smtp] and [alerts.digest], and every key a driver's bus and device tables and the
alert rules and actions read with a default (recorded by the parse itself,
gateway.section.Section `defaults`, so a driver's defaults need no copy here). A table the
file leaves out stays out: an absent table means "off". The output parses back
(`gateway.config.loader.parse`) to an equal configuration, except where a secret was masked.

Masked as `***` (when not empty), wherever they appear, including device `params`: keys named
`password`, `passphrase`, `secret`, `token`, `psk`, `bindkey`, `apikey_secret`, and any key
ending in `_password`, `_secret`, `_token` or `_bindkey`. Not masked: `password_file`,
`tls.ca/cert/key` and `ca_file`, which are file paths shown as written (this command never
opens them), `username`, and the uplink `apikey` (a FIWARE routing name sent in every topic,
not a credential). Never writes anything but its output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.config import loader as config_mod
from gateway.config.uplink import MQTT_ONLY
from gateway.errors import ConfigError

EX_CONFIG = 78  # as gateway.cli.main: the config is bad
MASK = "***"
SECRET_NAMES = frozenset(
    {"password", "passphrase", "secret", "token", "psk", "bindkey", "apikey_secret"}
)
SECRET_SUFFIXES = ("_password", "_secret", "_token", "_bindkey")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: str) -> None:
    """`gateway config [-c FILE] [--json]` on the main parser's subcommands."""
    p = sub.add_parser("config", help="the effective configuration, defaults filled, secrets ***")
    p.add_argument("-c", "--config", default=config, help="config TOML file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return EX_CONFIG
    text = Path(args.config).read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    defaults: dict[str, dict[str, object]] = {}
    config_mod.parse(text, args.config, defaults=defaults)  # what each table left to defaults
    doc = mask(effective(cfg, raw, defaults))
    if args.json:
        print(json.dumps(doc, indent=1, ensure_ascii=False, default=str))
    else:
        print(f"# effective configuration of {args.config} (defaults filled in, secrets ***)")
        print(dumps(doc), end="")
    return 0


def is_secret(key: str) -> bool:
    """Whether a value under this key is masked (see the module docstring)."""
    k = key.lower()
    return k in SECRET_NAMES or k.endswith(SECRET_SUFFIXES)


def mask(value: Any, key: str = "") -> Any:
    """`value` with every non-empty secret replaced by `***`, recursively."""
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if is_secret(key) and value not in ("", None):
        return MASK
    return value


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}  # TOML has no null: absent = unset


def effective(
    cfg: config_mod.Config, raw: dict[str, Any], defaults: dict[str, dict[str, object]]
) -> dict[str, Any]:
    """The config as a TOML-shaped dict: core defaults from `cfg`, the rest from `raw` with
    the defaults its tables left to the drivers and the rule kinds (`defaults`, by path)."""
    site = _drop_none(asdict(cfg.site))
    site["profile_dirs"] = list(cfg.site.profile_dirs)
    uplink = asdict(cfg.uplink)
    uplink["commands"] = list(cfg.uplink.commands)
    # Only the keys of the chosen transport: the loader refuses the other's (host comes
    # from the url over HTTP; url and request_timeout mean nothing to MQTT).
    other = MQTT_ONLY if cfg.uplink.transport == "http" else ("url", "request_timeout")
    for key in other:
        del uplink[key]
    store = asdict(cfg.store)
    doc: dict[str, Any] = {"gateway": site, "uplink": uplink, "store": store}
    raw_buses = raw.get("buses", [])
    buses = []
    for bus, raw_bus in zip(cfg.buses, raw_buses, strict=True):
        out = dict(raw_bus)
        out["name"], out["transport"] = bus.name, bus.transport
        devices = []
        for device, raw_device in zip(bus.devices, raw_bus.get("devices", []), strict=True):
            common = {
                "id": device.id,
                "profile": device.profile,
                "name": device.name,
                "latitude": device.latitude,
                "longitude": device.longitude,
                "interval": device.interval,
                "params": dict(device.params),
                "attributes": dict(device.attributes),
            }
            devices.append({**raw_device, **_drop_none(common)})
        if devices:
            out["devices"] = devices
        buses.append(out)
    if buses:
        doc["buses"] = buses
    if "alerts" in raw:
        doc["alerts"] = _alerts(cfg, raw["alerts"])
    for path, values in defaults.items():
        if path.startswith(("buses", "alerts")):
            table = _table_at(doc, path)
            if table is not None:
                for key, value in values.items():
                    table.setdefault(key, value)
    return doc


_STEP = re.compile(r"([^.\[\]]+)(?:\[(\d+)\])?")


def _table_at(doc: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The table at a Section path (`buses[0].devices[1]`, `alerts.rules[2]`) when the
    config wrote it; None for a table it left out (absent means off: never add one)."""
    node: Any = doc
    for name, index in _STEP.findall(path):
        node = node.get(name) if isinstance(node, dict) else None
        if index:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        if not isinstance(node, dict):
            return None
    return node if isinstance(node, dict) else None


def _alerts(cfg: config_mod.Config, raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    smtp = cfg.alerts.smtp
    if smtp is not None:
        filled = asdict(smtp)
        filled["from"] = filled.pop("sender")
        out["smtp"] = {**raw.get("smtp", {}), **filled}
    digest = cfg.alerts.digest
    if digest is not None:
        hour, minute = digest.at
        out["digest"] = {
            **raw.get("digest", {}),
            "at": f"{hour:02d}:{minute:02d}",
            "groups": list(digest.groups),
            "quantities": list(digest.quantities),
            "resolution": digest.resolution,
        }
    return out


# -- a small TOML writer (tomllib reads only) -----------------------------------------------
def dumps(doc: dict[str, Any]) -> str:
    """`doc` as TOML text: plain values first, then tables and arrays of tables."""
    return "".join(_table(doc, ()))


def _table(table: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    lines = [f"{_key(k)} = {_value(v)}\n" for k, v in table.items() if not _is_nested(v)]
    for k, v in table.items():
        if isinstance(v, dict) and v:
            lines.append(f"\n[{'.'.join(_key(p) for p in (*path, k))}]\n")
            lines += _table(v, (*path, k))
        elif _is_array_of_tables(v):
            for item in v:
                lines.append(f"\n[[{'.'.join(_key(p) for p in (*path, k))}]]\n")
                lines += _table(item, (*path, k))
    return lines


def _is_array_of_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)


def _is_nested(v: Any) -> bool:
    return (isinstance(v, dict) and bool(v)) or _is_array_of_tables(v)


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON's escapes (\", \\, \n, \uXXXX) are TOML basic-string escapes too.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(i) for i in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(i)}" for k, i in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
