"""A simulated Modbus slave: a profile's registers with plausible changing values, PDU in, PDU out.

Serves function codes 1-6, 15 and 16 from a register table built from a profile (or given
outright, e.g. an [[example]]'s registers); addresses the profile does not map answer with
exception 2, like most field devices. Records every write (the relay tests and the
hardware-in-the-loop rig read them back) and carries the fault switches the simulator applies.
No I/O here: drivers.modbus.sim moves the bytes.
"""

from __future__ import annotations

import math
import random
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.points import BIT_KINDS, Point
from gateway.model import Value

_KIND_OF = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


@dataclass
class Faults:
    """What the simulated unit does wrong; tests flip these while a bus runs."""

    silent: bool = False  # never answer (a dead or unplugged slave)
    exception: int = 0  # answer every request with this exception code
    garbage: bool = False  # answer with a broken frame (bad CRC on RTU, junk on TCP)
    delay: float = 0.0  # seconds before each answer (a slow slave)
    drop_rate: float = 0.0  # probability of ignoring one request (an occasional timeout)


@dataclass(frozen=True)
class Write:
    kind: str  # "coil" or "holding"
    address: int
    values: tuple[int, ...]


@dataclass
class SimUnit:
    """One slave's memory and behaviour."""

    decoder: ModbusDecoder
    params: Mapping[str, Value] = field(default_factory=dict)
    registers: Mapping[str, Mapping[int, int]] | None = None  # fixed values instead of live
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    clock: Callable[[], float] = time.monotonic
    on_write: Callable[[Write], None] | None = None
    writes: list[Write] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.data: dict[str, dict[int, int]] = {k: {} for k in _KIND_OF.values()}
        for p in self.decoder.points:
            for i in range(p.count):
                self.data[p.kind][p.address + i] = 0
            if p.decimals_from:
                self._set_raw(self._point(p.decimals_from), 1)
        for t in self.decoder.triggers:
            self.data[t.kind].setdefault(t.address, 0)
        if self.registers is not None:
            for kind, values in self.registers.items():
                self.data[kind].update(values)
        else:
            self.refresh()

    def _point(self, name: str) -> Point:
        return next(p for p in self.decoder.points if p.name == name)

    def _set_raw(self, point: Point, value: float | bool, shift: int = 0) -> None:
        words = self.decoder.encode(point, value, shift)
        if point.type in ("bit", "bits"):
            mask = ((1 << point.width) - 1) << point.bit
            old = self.data[point.kind].get(point.address, 0)
            words = [(old & ~mask) | words[0]]
        for i, w in enumerate(words):
            self.data[point.kind][point.address + i] = w

    # -- live values ----------------------------------------------------------------------
    def _wave(self, lo: float, hi: float, phase: float) -> float:
        """A slow sine over [lo, hi] (period 10 min) plus a little noise."""
        t = self.clock()
        mid, amp = (lo + hi) / 2, (hi - lo) / 2
        value = mid + 0.9 * amp * math.sin(2 * math.pi * t / 600.0 + phase)
        return value + self.rng.uniform(-0.05, 0.05) * amp

    @staticmethod
    def _band(
        typical: tuple[float, float] | None, lo: float | None, hi: float | None
    ) -> tuple[float, float] | None:
        if typical is not None:
            return typical
        if lo is not None and hi is not None:
            # the lower-middle of the plausible range: believable, not a gale or a heatwave
            return lo + 0.2 * (hi - lo), lo + 0.4 * (hi - lo)
        return None

    def refresh(self) -> None:
        """Move every emitted value along its wave; coils keep what was written."""
        if self.registers is not None:
            return
        targets: dict[str, float] = {}
        for i, d in enumerate(self.decoder.derived):
            band = self._band(d.typical, d.lo, d.hi)
            param = self.params.get(d.param)
            if band is None or isinstance(param, bool) or not isinstance(param, int | float):
                continue
            goal = (self._wave(*band, phase=i) - d.offset) / d.scale
            if d.op == "difference":
                targets[d.point] = param - goal
            elif d.op == "sum":
                targets[d.point] = goal - param
            elif param:
                targets[d.point] = goal / param
        for i, p in enumerate(self.decoder.points):
            if p.kind in BIT_KINDS or not p.emit:
                continue
            band = self._band(p.typical, p.lo, p.hi)
            value = targets.get(p.name)
            if value is None and band is not None:
                value = self._wave(*band, phase=1.7 * i)
            if value is None:
                continue
            if p.type in ("bit", "bits", "u16", "u32", "i16", "i32") and p.scale == 1:
                value = round(value)
            shift = (
                self.data[p.kind].get(self._point(p.decimals_from).address, 0)
                if (p.decimals_from)
                else 0
            )
            self._set_raw(p, value, shift)

    # -- requests -------------------------------------------------------------------------
    def handle(self, pdu: bytes) -> bytes:
        """Answer one request PDU with a response PDU (an exception PDU on any problem)."""
        self.requests += 1
        if not pdu:
            return bytes([0x80, 1])
        function = pdu[0]
        if self.faults.exception:
            return bytes([function | 0x80, self.faults.exception])
        try:
            return self._dispatch(function, pdu)
        except (struct.error, IndexError, ValueError):
            return bytes([function | 0x80, 3])  # illegal data value: a malformed request

    def _dispatch(self, function: int, pdu: bytes) -> bytes:
        if function in _KIND_OF:
            address, count = struct.unpack(">HH", pdu[1:5])
            kind = _KIND_OF[function]
            limit = 2000 if kind in BIT_KINDS else 125  # spec 6.1-6.4
            if not 1 <= count <= limit:
                return bytes([function | 0x80, 3])
            table = self.data[kind]
            if any(a not in table for a in range(address, address + count)):
                return bytes([function | 0x80, 2])
            self.refresh()
            values = [table[a] for a in range(address, address + count)]
            if kind in BIT_KINDS:
                packed = bytearray((count + 7) // 8)
                for i, v in enumerate(values):
                    if v:
                        packed[i // 8] |= 1 << (i % 8)
                return bytes([function, len(packed)]) + bytes(packed)
            return bytes([function, 2 * count]) + struct.pack(f">{count}H", *values)
        if function in (5, 6):
            address, value = struct.unpack(">HH", pdu[1:5])
            kind = "coil" if function == 5 else "holding"
            if function == 5 and value not in (0x0000, 0xFF00):  # spec 6.5
                return bytes([function | 0x80, 3])
            if address not in self.data[kind]:
                return bytes([function | 0x80, 2])
            self._record(kind, address, [1 if value == 0xFF00 else 0] if function == 5 else [value])
            return pdu[:5]
        if function in (15, 16):
            address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
            body = pdu[6 : 6 + nbytes]
            kind = "coil" if function == 15 else "holding"
            if len(body) != nbytes or count < 1:
                return bytes([function | 0x80, 3])
            if any(a not in self.data[kind] for a in range(address, address + count)):
                return bytes([function | 0x80, 2])
            if function == 15:
                values = [(body[i // 8] >> (i % 8)) & 1 for i in range(count)]
            else:
                values = list(struct.unpack(f">{count}H", body))
            self._record(kind, address, values)
            return pdu[:5]
        return bytes([function | 0x80, 1])

    def _record(self, kind: str, address: int, values: list[int]) -> None:
        for i, v in enumerate(values):
            self.data[kind][address + i] = v
        write = Write(kind, address, tuple(values))
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)

    def coil(self, address: int) -> bool:
        return bool(self.data["coil"].get(address, 0))
