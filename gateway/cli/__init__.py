"""The `gateway` command for technicians: run, check, status, outbox, decode, sim, scan,
test-alert, demo.

Owns: argument parsing and printing (`main`), the status report (`status`) and outbox
maintenance (`outbox`: salvage a quarantined file; `backlog`: export, import, purge).
May import anything in the core; it is the outermost layer. Subcommands import what they
need lazily so `gateway check` does not load the daemon.
"""

from gateway.cli.main import main

__all__ = ["main"]
