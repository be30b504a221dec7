"""The one module that calls pyserial: opening a port and reading it through the event loop.

A port is opened with pyserial (which sets termios: baud, framing, raw mode, and flushes the
input) in non-blocking mode and then read with `loop.add_reader` on its file descriptor, so a
box with ten ports runs no thread per port. pyserial and OS errors are mapped here, and only
here, onto gateway errors: a vanished port (EIO, hang-up, end of file, missing node) becomes
`BusUnavailable`; settings the driver cannot apply become `Permanent`. It knows nothing about
lines, sentences or devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
from collections.abc import AsyncIterator

import serial

from drivers.serial.options import PortSettings
from gateway.errors import BusUnavailable, Permanent

READ_SIZE = 65536


def _open_serial(path: str, settings: PortSettings) -> serial.Serial:
    port = serial.Serial()
    port.port = path
    try:
        port.baudrate = settings.baudrate
        port.bytesize = settings.bytesize
        port.parity = settings.parity
        port.stopbits = settings.stopbits
        port.exclusive = settings.exclusive
    except ValueError as exc:
        raise Permanent(f"cannot apply serial settings to {path}: {exc}") from None
    port.timeout = 0
    port.write_timeout = 0
    try:
        port.open()
    except serial.SerialException as exc:
        raise _unavailable(path, exc) from None
    except OSError as exc:
        raise _unavailable(path, exc) from None
    try:
        # pyserial sets VMIN=0 (it waits with select); with VMIN=0 a read on an idle tty
        # returns 0 bytes, which looks exactly like a hang-up. VMIN=1 makes an idle
        # non-blocking read fail with EAGAIN instead, so 0 bytes really means end of file.
        fd = _fd(port, path)
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (termios.error, OSError) as exc:
        port.close()
        raise _unavailable(path, OSError(*exc.args)) from None
    return port


def _fd(port: serial.Serial, path: str) -> int:
    """The open port's descriptor (pyserial's is None until the port is open)."""
    fd = port.fd
    if fd is None:
        raise BusUnavailable(f"port {path} is not open")
    return fd


def _unavailable(path: str, exc: Exception) -> BusUnavailable:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return BusUnavailable(f"port {path} does not exist (adapter unplugged?)")
    if code in (errno.EACCES, errno.EPERM):
        return BusUnavailable(f"no permission to open {path} (udev rule / dialout group?)")
    if code == errno.EBUSY or "exclusively lock" in str(exc):
        return BusUnavailable(f"port {path} is in use by another process")
    if code == errno.EIO:
        return BusUnavailable(f"I/O error on {path} (adapter unplugged?)")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return BusUnavailable(f"port {path}: {reason}")


class SerialPort:
    """An open port read through the event loop; `abort` makes a pending read fail."""

    def __init__(self, port: serial.Serial, path: str) -> None:
        self.path = path
        self._port = port
        self._fd = _fd(port, path)
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self._loop = asyncio.get_running_loop()

    @property
    def fd(self) -> int:
        return self._fd

    def abort(self, error: BaseException) -> None:
        """Fail the current and every later read with `error` (a hotplug `remove`)."""
        self._error = error
        self._ready.set()  # wakes a read waiting in _readable

    async def read(self) -> bytes:
        """The next chunk of bytes; raises BusUnavailable when the port is gone."""
        while True:
            if self._error is not None:
                raise self._error
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await self._readable()
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                raise _unavailable(self.path, exc) from None
            if not data:
                # A tty returns end of file after a hang-up (USB adapter gone, pty closed).
                raise BusUnavailable(f"port {self.path} hung up")
            return data

    async def _readable(self) -> None:
        # Watch the fd only while waiting: a level-triggered watch left on while the
        # consumer is busy (outbox back-pressure) would spin the loop on a full buffer.
        self._ready.clear()
        self._loop.add_reader(self._fd, self._ready.set)
        try:
            await self._ready.wait()
        finally:
            self._loop.remove_reader(self._fd)

    def close(self) -> None:
        with contextlib.suppress(OSError, serial.SerialException):
            self._port.close()


@contextlib.asynccontextmanager
async def open_port(path: str, settings: PortSettings) -> AsyncIterator[SerialPort]:
    """Open `path` for reading; closed again when the block ends, however it ends."""
    raw = _open_serial(path, settings)
    try:
        port = SerialPort(raw, path)
    except BaseException:
        raw.close()
        raise
    try:
        yield port
    finally:
        port.close()


class PortWriter:
    """A real port opened for writing (the simulators on hardware); waits when it is full."""

    def __init__(self, port: serial.Serial, path: str) -> None:
        self.path = path
        self._port = port
        self._fd = _fd(port, path)

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(self._fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(self._fd)
                continue
            except OSError as exc:
                raise _unavailable(self.path, exc) from None
            view = view[n:]

    def close(self) -> None:
        with contextlib.suppress(OSError, serial.SerialException):
            self._port.close()


def open_writer(path: str, settings: PortSettings) -> PortWriter:
    return PortWriter(_open_serial(path, settings), path)
