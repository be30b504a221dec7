"""The demo field and the local peers it runs: `gateway demo`, a throw-away mosquitto
(`broker`, also the tests' and benchmarks' broker) and an SMTP sink (`mailsink`).

May import anything in the core and each driver's `DEMO` hook; the daemon never imports it.
"""
