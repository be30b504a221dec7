"""systemd's notify protocol (gateway.notify): a status line systemd already has is not sent
again, and one that could not be sent is sent at the next try."""

from __future__ import annotations

import socket

from gateway.notify import Notifier


def received(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out


def test_an_unchanged_status_line_is_sent_once(tmp_path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        notifier = Notifier(str(path))
        try:
            notifier.ready("uplink down, outbox 0 rows")
            notifier.status("uplink down, outbox 0 rows")  # what READY=1 carried: not again
            notifier.status("uplink up, outbox 0 rows")
            notifier.status("uplink up, outbox 0 rows")
            notifier.ready("reloaded; 1 bus(es)")
            notifier.status("uplink up, outbox 0 rows")  # replaced by the reload's line: again
        finally:
            notifier.close()
        assert received(systemd) == [
            "READY=1\nSTATUS=uplink down, outbox 0 rows",
            "STATUS=uplink up, outbox 0 rows",
            "READY=1\nSTATUS=reloaded; 1 bus(es)",
            "STATUS=uplink up, outbox 0 rows",
        ]


def test_a_status_line_systemd_did_not_take_is_sent_again(tmp_path) -> None:
    path = tmp_path / "notify"
    notifier = Notifier(str(path))
    try:
        notifier.status("uplink up, outbox 0 rows")  # nobody listens yet: the send fails
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
            systemd.bind(str(path))
            notifier.status("uplink up, outbox 0 rows")
            assert received(systemd) == ["STATUS=uplink up, outbox 0 rows"]
    finally:
        notifier.close()
