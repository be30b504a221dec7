"""What the alert side remembers across restarts: `alert-state.json` beside the outbox.

One entry per (rule, device key) that is raised or has reported: whether it is active, whether
its cooldown window is open, and when it last reported. The file is rewritten whole (write a
temporary file, then rename) on each alert or clear, which are rare; it is not fsync'd, since
losing the last change in a power cut costs at most one repeated alert. A file that cannot be
read or written is logged once and otherwise ignored: alerts keep working from memory.
Must not: decide anything about rules; the engine applies what is loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, str]  # (rule name, device key)


@dataclass(frozen=True)
class Remembered:
    active: bool
    open: bool
    reported_at: float | None


class AlertMemory:
    def __init__(self, path: Path, log: Any) -> None:
        self.path = path
        self.log = log
        self._problem = False

    def load(self) -> dict[Key, Remembered]:
        """The saved entries; {} when there is no file or it cannot be used (logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.log.warning("alert state unreadable; starting fresh", error=str(exc))
            return {}
        if not isinstance(data, dict):
            return {}
        out: dict[Key, Remembered] = {}
        for key, entry in data.items():
            name, _, device = str(key).partition("|")
            if not isinstance(entry, dict):
                continue
            at = entry.get("reported_at")
            out[(name, device)] = Remembered(
                active=entry.get("active") is True,
                open=entry.get("open") is True,
                reported_at=float(at) if isinstance(at, int | float) else None,
            )
        return out

    def save(self, entries: Mapping[Key, Remembered]) -> None:
        data = {
            f"{name}|{device}": {"active": e.active, "open": e.open, "reported_at": e.reported_at}
            for (name, device), e in entries.items()
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._problem:
                self.log.warning("cannot save alert state", error=str(exc))
            self._problem = True
            with contextlib.suppress(OSError):
                tmp.unlink()
