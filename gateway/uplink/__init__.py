"""The uplink: the MQTT session to the platform, the payload formats and platform commands.

Owns: the MQTT session with its backoff (`session`) and what it counts (`stats`), the paho
client on the event loop (`client`, the only module importing paho), the in-flight window
(`window`), the byte rate limit (`ratelimit`), the payload encoders (`payload`, `compact`,
`wire`), the command router (`commands`) and the triage of rows that can never be
published (`triage`).
May import: `gateway.model`, `errors`, `supervise`, `config` and `outbox`. Never the alert side,
the daemon or a driver.
"""
