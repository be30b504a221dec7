"""The stateful middle of a BLE bus: adverts in, emissions and state changes out.

The router knows the configured devices by MAC (the allow-list), runs each device's pure
decoder, drops repeats of the same measurement (BTHome packet id / counter, Ruuvi sequence,
ATC counter), throttles chatty advertisers to one emission per device `interval` (discrete
values that change and trigger-based events pass at once), turns beacon sightings into
presence / absence events after `presence_timeout`, and reports a device unavailable once
when it falls silent or its adverts stop decoding (a wrong bindkey), and once when it is back.
It takes the time as an argument and does no I/O: the bus awaits the sink with its output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.ble.advert import Advert, Decoded
from drivers.ble.decoder import BleDecoder
from drivers.ble.options import BleDeviceOptions
from gateway.contract import DeviceConfig, options_as
from gateway.errors import DecodeError
from gateway.model import Observation, Value


@dataclass(frozen=True, slots=True)
class Emission:
    device: str
    observations: tuple[Observation, ...]
    ts: float


@dataclass(frozen=True, slots=True)
class StateChange:
    device: str
    available: bool
    reason: str = ""


Action = Emission | StateChange


@dataclass
class Counters:
    adverts: int = 0
    ignored: int = 0
    duplicates: int = 0
    decode_errors: int = 0
    throttled: int = 0
    emitted: int = 0


@dataclass
class Track:
    """Per-device state."""

    device: DeviceConfig
    options: BleDeviceOptions
    decoder: BleDecoder
    params: Mapping[str, Value]
    last_key: Any = None
    last_seen: float | None = None
    last_emit: float | None = None
    down: str | None = None
    trigger: bool = False
    present: bool | None = None
    last_values: dict[str, Value] = field(default_factory=dict)
    pending: tuple[tuple[Observation, ...], float] | None = None


def device_params(device: DeviceConfig) -> dict[str, Value]:
    params: dict[str, Value] = dict(device.params)
    options = options_as(device.options, BleDeviceOptions)
    if options.bindkey:
        params["bindkey"] = options.bindkey
    return params


class Router:
    def __init__(self, devices: Sequence[DeviceConfig], start: float) -> None:
        self.start = start
        self.counters = Counters()
        self.by_mac: dict[str, list[Track]] = {}
        self.by_id: dict[str, Track] = {}
        for device in devices:
            if not isinstance(device.decoder, BleDecoder):
                continue
            options = options_as(device.options, BleDeviceOptions)
            track = Track(device, options, device.decoder, device_params(device))
            self.by_mac.setdefault(options.address, []).append(track)
            self.by_id[device.id] = track
        self.addresses = frozenset(self.by_mac)

    # -- input -----------------------------------------------------------------------------
    def advert(self, advert: Advert, now: float, wall: float) -> list[Action]:
        tracks = self.by_mac.get(advert.address)
        if tracks is None:
            self.counters.ignored += 1
            return []
        self.counters.adverts += 1
        out: list[Action] = []
        for track in tracks:
            track.last_seen = now
            if not track.decoder.wants(advert):
                continue
            try:
                decoded = track.decoder.decode_advert(advert, track.params)
            except DecodeError as exc:
                self.counters.decode_errors += 1
                self._down(track, f"cannot decode: {exc}", out)
                continue
            self._accept(track, decoded, now, wall, out)
        return out

    def decoded(self, device_id: str, decoded: Decoded, now: float, wall: float) -> list[Action]:
        """Values that came another way (a GATT read or notification)."""
        track = self.by_id[device_id]
        track.last_seen = now
        out: list[Action] = []
        self._accept(track, decoded, now, wall, out)
        return out

    def failed(self, device_id: str, reason: str) -> list[Action]:
        out: list[Action] = []
        self._down(self.by_id[device_id], reason, out)
        return out

    def tick(self, now: float, wall: float) -> list[Action]:
        """Time-driven transitions: presence timeouts, silence, due throttled values."""
        out: list[Action] = []
        for track in self.by_id.values():
            seen = track.last_seen if track.last_seen is not None else self.start
            silent = now - seen
            if track.decoder.event_protocol:
                if track.present is not False and silent >= track.options.presence_timeout:
                    track.present = False
                    self._emit(track, (Observation("presence", False, ""),), now, wall, out)
                continue
            stale = track.options.stale_after
            if stale > 0 and not track.trigger and silent >= stale:
                self._down(track, f"no advertisement for {int(silent)} s", out)
            if track.pending is not None and self._due(track, now):
                observations, ts = track.pending
                track.pending = None
                self._emit(track, observations, now, ts, out)
        return out

    # -- internals -------------------------------------------------------------------------
    def _accept(
        self, track: Track, decoded: Decoded, now: float, wall: float, out: list[Action]
    ) -> None:
        if track.down is not None:
            track.down = None
            out.append(StateChange(track.device.id, True))
        if decoded.key is not None:
            if decoded.key == track.last_key:
                self.counters.duplicates += 1
                return
            track.last_key = decoded.key
        track.trigger = track.trigger or decoded.trigger
        observations = tuple(decoded.observations)
        if not observations:
            return
        if track.decoder.event_protocol:
            if track.present is not True:
                track.present = True
                self._emit(track, observations, now, wall, out)
            return
        urgent = decoded.trigger or any(
            isinstance(o.value, bool | str) and track.last_values.get(o.quantity) != o.value
            for o in observations
        )
        if urgent or self._due(track, now):
            track.pending = None
            self._emit(track, observations, now, wall, out)
        else:
            self.counters.throttled += 1
            track.pending = (observations, wall)

    def _due(self, track: Track, now: float) -> bool:
        interval = track.device.interval
        return interval <= 0 or track.last_emit is None or now - track.last_emit >= interval

    def _emit(
        self,
        track: Track,
        observations: tuple[Observation, ...],
        now: float,
        ts: float,
        out: list[Action],
    ) -> None:
        track.last_emit = now
        for o in observations:
            track.last_values[o.quantity] = o.value
        self.counters.emitted += 1
        out.append(Emission(track.device.id, observations, ts))

    def _down(self, track: Track, reason: str, out: list[Action]) -> None:
        if track.down is None:
            track.down = reason
            out.append(StateChange(track.device.id, False, reason))
