"""One configured device listening on a serial port: its decoder plus its event shaping.

The bus hands every text line to every device on the port. A device decodes it with its
profile's pure decoder and turns the observations into what is emitted under which device key:

* observations with a `source` (a trap id behind a receiver) go out under the device key
  `<device id>-<source>` (e.g. `trap-rx-17`) with the source cleared, so everything downstream
  (pipeline, alert rules, payloads) sees each trap as a device of its own;
* event profiles (`events = true`) emit at once, after dropping radio resends: back-to-back
  repeats of one trap's last message (Deduplicator; a change of state always passes);
* other profiles are averaged over the device `interval` (Sampler); `interval = 0` emits every
  line as it comes.

Decode errors propagate to the bus, which counts them, as it counts the XDR quads `accept`
returns unmapped. No I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.serial.events import Deduplicator, Sampler
from drivers.serial.nmea import NmeaDecoder
from drivers.serial.options import DeviceOptions
from gateway.contract import DeviceConfig, options_as
from gateway.model import Observation, Value

Batch = dict[str, list[Observation]]


class DeviceStream:
    def __init__(self, device: DeviceConfig) -> None:
        if device.decoder is None:
            raise ValueError(f"device {device.id} has no decoder (profile not loaded)")
        self.device = device
        self.decoder = device.decoder
        # NMEA also reports the XDR quads it could not map, for the bus to count.
        self.nmea = device.decoder if isinstance(device.decoder, NmeaDecoder) else None
        self.params: Mapping[str, Value] = device.params
        options = (
            DeviceOptions() if device.options is None else options_as(device.options, DeviceOptions)
        )
        self.talkers = options.talkers
        self.silence = options.silence
        self.events = bool(getattr(self.decoder, "events", False))
        window = options.dedup_window
        if window is None:
            window = float(getattr(self.decoder, "dedup_window", 0.0))
        self.ignore = frozenset(getattr(self.decoder, "dedup_ignore", ()))
        self.dedup = Deduplicator(window) if self.events and window > 0 else None
        self.sampler = Sampler(device.interval) if not self.events and device.interval > 0 else None
        self.last_heard: float | None = None
        self.available: bool | None = None

    def accept(self, line: str, now: float, batch: Batch) -> tuple[str, ...]:
        """Decode `line` and add what should be emitted to `batch`; returns the XDR quads of
        the line that map to no quantity (usually none). DecodeError propagates."""
        if self.talkers:
            start = line.rfind("$")
            if start >= 0 and line[start + 1 : start + 3] not in self.talkers:
                return ()
        unmapped: tuple[str, ...] = ()
        if self.nmea is not None:
            observations, unmapped = self.nmea.decode_counted(line, self.params)
        else:
            observations = self.decoder.decode(line, self.params)
        self.last_heard = now
        if not observations:
            return unmapped
        if self.sampler is not None:
            self.sampler.add(observations, now)
        else:
            self._route(observations, now, batch)
        return unmapped

    def flush(self, now: float, batch: Batch) -> None:
        if self.sampler is not None:
            out = self.sampler.flush(now)
            if out:
                self._route(out, now, batch)

    def next_due(self) -> float | None:
        return self.sampler.due if self.sampler is not None else None

    def _route(self, observations: list[Observation], now: float, batch: Batch) -> None:
        groups: dict[str | None, list[Observation]] = {}
        for o in observations:
            groups.setdefault(o.source, []).append(o)
        for source, group in groups.items():
            if self.dedup is not None:
                content = tuple(
                    (o.quantity, o.value) for o in group if o.quantity not in self.ignore
                )
                if not self.dedup.admit(source, content, now):
                    continue
            # Sub-device observations keep their `source`: the pipeline builds (and
            # sanitises) the sub-device key and records the receiver as its parent.
            batch.setdefault(self.device.id, []).extend(group)

    @property
    def duplicates(self) -> int:
        return self.dedup.dropped if self.dedup is not None else 0
