"""Splits a serial byte stream into lines, bounded and self-resynchronising.

CR, LF and CR LF all end a line (NMEA uses CR LF, some receivers only one of them); empty lines
vanish. A line longer than `max_line` bytes is dropped as a whole and counted: the framer throws
bytes away until the next line end and starts clean there, so one run of noise without a line
end costs at most that line and never grows memory. Pure: no I/O, no clock.
"""

from __future__ import annotations


class LineFramer:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.overlong = 0
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial line (after a reconnect the rest of it will never come)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        *complete, rest = data.split(b"\n")
        lines: list[bytes] = []
        for i, piece in enumerate(complete):
            if i == 0:
                if self._discarding:
                    # The overlong line ends here; it was counted when it overflowed.
                    self._discarding = False
                    self._buf.clear()
                    continue
                if self._buf:
                    piece = bytes(self._buf) + piece
                    self._buf.clear()
            if not piece:
                continue
            if len(piece) > self.max_line:
                self.overlong += 1
                continue
            lines.append(piece)
        if not self._discarding:
            self._buf += rest
            if len(self._buf) > self.max_line:
                self._buf.clear()
                self._discarding = True
                self.overlong += 1
        return lines
