"""The alert side: rules on readings, local actions, platform events, e-mail and the digest.

Owns: the `[alerts]` config (`config`), rules as pure state machines (`rules`), the Alert value
(`alert`), the engine that feeds readings to rules (`engine`) and what it remembers across
restarts (`memory`), relay actions (`actions`), mail text (`compose`), the SMTP mailer
(`mailer`), the daily digest (`digest`), the technician's test alert (`trial`) and the
daemon-facing wiring (`wiring`).
May import: the core values and services (`gateway.model`, `errors`, `clock`, `supervise`,
`contract`, `pipeline`), `gateway.config` and `gateway.outbox`. Never `gateway.uplink`, the
daemon, the CLI or a driver: relays arrive as `contract.Actuator`s, commands are handed over
as plain handlers.
"""
