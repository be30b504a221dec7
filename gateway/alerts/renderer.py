"""Drawing charts in a short-lived child process (gateway.alerts.plot), never in the daemon.

`Renderer.render(specs)` starts `python -m gateway.alerts.plot`, writes the specs as JSON to
its stdin and returns one PNG per spec, or raises `ChartFailed` naming why (the child could
not start, crashed, timed out, found no font with the labels' glyphs, or answered nonsense).
The daemon never imports matplotlib: its idle memory stays small and the child's (about
75 MB at its peak) is given back when it exits. The caller decides what a failure means (the
mail goes text-only); failures are logged here once per transition, not per mail.
matplotlib keeps its font cache in `cache_dir` (MPLCONFIGDIR), beside the outbox, so the
gateway's system user needs no home directory and the cache is built once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMAND = (sys.executable, "-m", "gateway.alerts.plot")


class ChartFailed(Exception):
    """The charts could not be drawn; the message says why."""


class Renderer:
    def __init__(
        self,
        *,
        log: Any,
        command: Sequence[str] = COMMAND,
        timeout: float = 120.0,
        cache_dir: Path | None = None,
    ) -> None:
        self.log = log
        self.command = tuple(command)
        self.timeout = timeout
        self.cache_dir = cache_dir
        self.drawn = 0
        self.failed = 0
        self._failing = False

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, MPLBACKEND="Agg")
        if self.cache_dir is not None:
            with contextlib.suppress(OSError):
                self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            env["MPLCONFIGDIR"] = str(self.cache_dir)
        return env

    async def render(self, specs: Sequence[dict[str, Any]]) -> list[bytes]:
        """One PNG per spec; raises ChartFailed (logged on the transition to failing)."""
        try:
            pngs = await self._render(specs)
        except ChartFailed as exc:
            self.failed += 1
            if not self._failing:
                self.log.warning("charts not drawn; mail goes without them", error=str(exc))
            self._failing = True
            raise
        if self._failing:
            self.log.info("charts drawn again")
        self._failing = False
        self.drawn += len(pngs)
        return pngs

    async def _render(self, specs: Sequence[dict[str, Any]]) -> list[bytes]:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
            )
        except OSError as exc:
            raise ChartFailed(f"cannot start {self.command[0]}: {exc.strerror or exc}") from None
        data = json.dumps({"charts": list(specs)}, ensure_ascii=False).encode()
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), self.timeout)
        except TimeoutError:
            raise ChartFailed(f"chart process timed out after {self.timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: never leave it behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else "no message"
            raise ChartFailed(f"chart process exited with {proc.returncode}: {why}")
        pngs, answer = _decode(out, len(specs))
        self.log.info(
            "charts drawn",
            charts=len(pngs),
            seconds=round(time.monotonic() - started, 2),
            child_peak_rss_mb=round(int(answer.get("peak_rss_kb", 0)) / 1024, 1),
            font=answer.get("font"),
        )
        return pngs


def _decode(out: bytes, count: int) -> tuple[list[bytes], dict[str, Any]]:
    try:
        answer = json.loads(out)
        pngs = [base64.b64decode(p, validate=True) for p in answer["png"]]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ChartFailed(f"chart process answered nonsense: {exc!r}"[:200]) from None
    if len(pngs) != count or not all(p.startswith(PNG_MAGIC) for p in pngs):
        raise ChartFailed(f"chart process gave {len(pngs)} images for {count} charts")
    return pngs, answer
