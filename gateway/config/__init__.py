"""Configuration: one TOML file and the device profiles it names, parsed once into frozen values.

Owns: the device profile library (`profiles`) and the gateway's own tables (`loader`: `load`,
`parse`, `Config` and its parts), both read through `gateway.section`, and the files the
`[uplink]` table names (`tls`: the TLS context from the CA, certificate and key, and what
`gateway check` reports about them), and what the config points at beyond those (`reach`: the
store directory and each bus's port through its driver's `reach` hook; `gateway check`'s
warnings).
May import: `gateway.model`, `errors`, `contract`, `registry` (to let each driver parse its own
keys) and `gateway.alerts.config` (the `[alerts]` table). Nothing that does I/O beyond
reading files. This `__init__` imports nothing, so a driver's simulator that loads profiles
does not pull in the whole config loader.
"""
