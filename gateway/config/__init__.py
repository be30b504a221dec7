"""Configuration: one TOML file and the device profiles it names, parsed once into frozen values.

Owns: the device profile library (`profiles`) and the gateway's own tables (`loader`), both
read through `gateway.section`.
May import: `gateway.model`, `errors`, `contract`, `registry` (to let each driver parse its own
keys) and `gateway.alerts.config` (the `[alerts]` table). Nothing that does I/O beyond
reading files.
"""

from gateway.config.loader import (
    DEFAULT_PATH,
    Config,
    SiteConfig,
    StoreConfig,
    TlsConfig,
    UplinkConfig,
    load,
    parse,
)

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "SiteConfig",
    "StoreConfig",
    "TlsConfig",
    "UplinkConfig",
    "load",
    "parse",
]
