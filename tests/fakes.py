"""Injected fakes for tests: they record what the code under test did, with no I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.model import Observation, sub_device_key


@dataclass
class Emitted:
    device: str
    observations: tuple[Observation, ...]
    ts: float | None


def _key(device: str, o: Observation) -> str:
    return device if o.source is None else sub_device_key(device, o.source)


@dataclass
class RecordingSink:
    """A gateway.contract.Sink that keeps every emit and device-state change in order."""

    emitted: list[Emitted] = field(default_factory=list)
    states: list[tuple[str, bool, str]] = field(default_factory=list)
    _changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def emit(
        self, device: str, observations: Sequence[Observation], ts: float | None = None
    ) -> None:
        self.emitted.append(Emitted(device, tuple(observations), ts))
        async with self._cond():
            self._cond().notify_all()

    def device_state(self, device: str, available: bool, reason: str = "") -> None:
        self.states.append((device, available, reason))

    def values(self, device: str, quantity: str) -> list[object]:
        """Values of `quantity` filed under the device key `device`; a sub-device's key is
        built as the pipeline builds it (`traps` + source `17` -> `traps-17`)."""
        return [
            o.value
            for e in self.emitted
            for o in e.observations
            if o.quantity == quantity and _key(e.device, o) == device
        ]

    def parents(self, device: str) -> set[str]:
        """The configured devices that emitted readings filed under the key `device`."""
        return {
            e.device for e in self.emitted for o in e.observations if _key(e.device, o) == device
        }

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        """Wait until predicate(self) holds; fails the test with TimeoutError otherwise."""

        async def _wait() -> None:
            async with self._cond():
                await self._cond().wait_for(lambda: predicate(self))

        await asyncio.wait_for(_wait(), timeout)
