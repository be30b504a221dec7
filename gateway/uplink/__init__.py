"""The uplink: the MQTT session to the platform, the payload formats and platform commands.

Owns: the paho session with its backoff, in-flight window and rate limit (`session`, the only
module importing paho), the payload encoders (`payload`, `compact`, `wire`) and the command
router (`commands`).
May import: `gateway.model`, `errors`, `supervise`, `config` and `outbox`. Never the alert side,
the daemon or a driver.
"""
