"""The demo field and the local peers it runs: `gateway demo` (`field`), its config template
(`demo.toml` and `relay.toml`, filled in by `template`), a throw-away mosquitto (`broker`, also
the tests' and benchmarks' broker) and an SMTP sink (`mailsink`).

May import anything in the core and each driver's `DEMO` hook; the daemon never imports it.
It configures the daemon through its constructor and never reaches into a running one.
"""
