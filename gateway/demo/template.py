"""The demo's config: a TOML template shipped in this package, filled in at run time.

`demo.toml` is the demo field as it is (site, uplink settings, the synthetic devices, the
alert groups and rules); `relay.toml` holds the siren and flash actions, added when a
driver's demo field has the relay module `relay-1`. The only values not known in advance are
the fields of `DemoValues`; `render` is the one place they are written into the template,
each as a TOML literal (strings quoted and escaped), so a work directory with a quote or a
backslash in its name cannot break the config. It does no I/O beyond reading the package's
own files, and never validates: `gateway.config.loader.parse` does that.
"""

from __future__ import annotations

import json
import string
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

RELAY = "relay-1"  # the relay module relay.toml's actions switch


@dataclass(frozen=True)
class DemoValues:
    """What only the running demo knows."""

    uplink_host: str  # the broker the demo publishes to
    uplink_port: int
    workdir: Path  # the outbox and the status file live here
    smtp_port: int  # the local mail sink
    driver_buses: tuple[str, ...] = ()  # `[[buses]]` TOML from each driver's DEMO hook
    digest_at: str = "18:00"  # site-local "HH:MM": the demo sets a few minutes after its start


def _resource(name: str) -> str:
    return resources.files("gateway.demo").joinpath(name).read_text(encoding="utf-8")


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(text, ensure_ascii=False)


def has_relay(buses_toml: str) -> bool:
    """True when the `[[buses]]` text configures the relay module the actions switch."""
    buses = tomllib.loads(buses_toml).get("buses", [])
    return any(d.get("id") == RELAY for b in buses for d in b.get("devices", []))


def render(values: DemoValues) -> str:
    """The demo's config text: the template with `values` filled in."""
    buses = "\n".join(values.driver_buses)
    relay = has_relay(buses)
    return string.Template(_resource("demo.toml")).substitute(
        uplink_host=_toml_string(values.uplink_host),
        uplink_port=int(values.uplink_port),
        outbox_path=_toml_string(str(values.workdir / "outbox.sqlite")),
        # The demo runs as whoever starts it: its status file stays in its own directory.
        runtime_dir=_toml_string(str(values.workdir / "run")),
        smtp_port=int(values.smtp_port),
        digest_at=_toml_string(values.digest_at),
        driver_buses=buses,
        relay_actions=_resource("relay.toml") if relay else "",
        trap_actions='["siren", "flash"]' if relay else "[]",
    )
