"""Modbus RTU framing: CRC-16/MODBUS and PDU framing; pure, no I/O.

Used by the decoder's `rtu:` input form and by the simulator's serial side. Client-side framing
on a live bus uses pymodbus's framer (drivers.modbus.channel); this module must not import it.
"""

from __future__ import annotations

# CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF, sent low byte first
# (Modbus over Serial Line V1.02, section 2.5.1.2 and appendix B).
_POLY = 0xA001


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: address, PDU, CRC (low byte first)."""
    body = bytes([unit]) + pdu
    crc = crc16(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def crc_ok(data: bytes) -> bool:
    return len(data) >= 4 and crc16(data[:-2]) == data[-2] | (data[-1] << 8)


def request_length(buffer: bytes) -> int | None:
    """Length of the request frame at the start of `buffer`, None if not yet knowable.

    Requests the simulator serves have a length fixed by their function code (spec sections
    6.1-6.12): FC 1-6 are 8 bytes; FC 15/16 are 9 + byte count. Returns 0 for an unknown
    function code (the caller resynchronises on the inter-frame silence).
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (1, 2, 3, 4, 5, 6):
        return 8
    if function in (15, 16):
        return None if len(buffer) < 7 else 9 + buffer[6]
    return 0
