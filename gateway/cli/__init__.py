"""The `gateway` command for technicians: run, check, status, config, outbox, decode, profiles,
sim, scan, test-alert, demo.

Owns: argument parsing and printing (`main`), the status report (`status`: text, JSON, watch),
the effective configuration with secrets masked (`config`), outbox maintenance (`outbox`:
salvage a quarantined file; `backlog`: export, import, purge; `offline`: what those share to
have the outbox to themselves), trying a profile on captured input (`decode`) and listing the
device profiles (`profiles`).
May import anything in the core; it is the outermost layer. Subcommands import what they
need lazily so `gateway check` does not load the daemon.
"""

from gateway.cli.main import main

__all__ = ["main"]
