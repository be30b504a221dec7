"""The Modbus driver's own errors: a unit that did not answer, or answered with an exception.

Both are gateway.errors.DeviceUnavailable (the bus reports the device down and polls it again
on its schedule). No I/O here; drivers.modbus.transport maps pymodbus's exceptions onto these.
"""

from __future__ import annotations

from gateway.errors import DeviceUnavailable

# Modbus Application Protocol V1.1b3 section 7: exception codes.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class NoResponse(DeviceUnavailable):
    """The unit did not answer usefully (silence, CRC error, garbled frame)."""


class UnitException(DeviceUnavailable):
    """The unit answered with a Modbus exception code: it is there, but refused."""

    def __init__(self, unit: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(f"unit {unit}: exception {code} ({name})")
