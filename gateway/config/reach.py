"""What the config points at, looked at before a run: the store directory and the buses' ports.

`warnings(cfg)` is what `gateway check` prints as `warning: <path>: <message>` and does not
fail on: the store directory may not exist yet (the daemon creates it, the unit's
StateDirectory= too) but must be creatable and writable by this user; a serial port may be
unplugged (its bus waits for it), so each driver's `reach` hook only says what it sees.
Must not: open, create or write anything, or log.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config.loader import Config
from gateway.contract import Driver
from gateway.errors import Problem
from gateway.hotplug import Hotplug
from gateway.registry import driver_for_transport


def store_problems(path: str) -> list[Problem]:
    """Whether this user can keep the outbox file at `path` (create it, write it, its WAL)."""
    directory = Path(path).parent
    where = "store.path"
    probe = directory
    while not probe.exists():  # the daemon creates missing parents: the nearest one counts
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return [Problem(where, f"{probe} is not a directory, so {path} cannot be created")]
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "directory" if probe == directory else f"directory (creating {directory})"
        reason = "read-only file system" if _read_only(probe) else "no permission"
        return [Problem(where, f"cannot write in the {what} {probe}: {reason}")]
    if probe == directory and os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return [Problem(where, f"cannot write {path}: no permission")]
    return []


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def bus_problems(cfg: Config, hotplug: Hotplug | None = None) -> list[Problem]:
    """What each bus's driver sees in the way of its resource, under the bus's config path."""
    found: list[Problem] = []
    for index, bus in enumerate(cfg.buses):
        driver: Driver | None = driver_for_transport(bus.transport)
        if driver is None:  # load refused an unknown transport already
            continue
        for key, message in driver.reach(bus, hotplug):
            found.append(Problem(f"buses[{index}].{key}", message))
    return found


def warnings(cfg: Config, hotplug: Hotplug | None = None) -> list[Problem]:
    """Every warning about what `cfg` points at; `hotplug` (default: sysfs) lists devices."""
    return store_problems(cfg.store.path) + bus_problems(cfg, hotplug)
