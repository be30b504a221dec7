"""The daemon as a process when its outbox is locked, read-only, held twice, full or damaged,
and `gateway status` / `gateway outbox salvage` around it. Real processes, files and mounts."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gateway.errors import StoreUnusable
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from tests.disk import needs_root, remount, tmpfs
from tests.test_daemon import ROOT, Proc, config_text
from tests.test_outbox_faults import damage_pages, hold_write_lock, rows_in


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def readings(outbox: Outbox, n: int) -> list[Reading]:
    return [
        Reading(seq, "counter", "n", float(seq), "", 1_780_000_000.0 + seq, True, Lane.TELEMETRY)
        for seq in outbox.allocate(n)
    ]


def outbox_with_rows(path: Path, n: int) -> None:
    async def fill() -> None:
        async with Outbox.open(path) as ob:
            await ob.append(readings(ob, n))

    asyncio.run(fill())


def wait_for_file(path: Path) -> None:
    """The daemon's first report follows its "gateway running" line at once."""
    for _ in range(400):
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def refused(proc: Proc) -> dict:
    """The one log line of a start refused for the outbox; no traceback anywhere."""
    assert proc.p.wait(60) == 78
    text = proc.log.read_text()
    assert "Traceback" not in text, text
    (line,) = [e for e in proc.events() if e["event"] == "outbox unusable; not starting"]
    return line


@pytest.mark.slow  # SQLite waits 5 s for the lock before it gives up
def test_a_locked_outbox_stops_the_start_with_exit_78_and_keeps_its_rows(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, 1))
    outbox_with_rows(tmp_path / "outbox.sqlite", 9742)
    holder = hold_write_lock(tmp_path / "outbox.sqlite")
    try:
        line = refused(Proc(cfg, tmp_path / "log"))
    finally:
        holder.communicate("")
    assert line["path"] == str(tmp_path / "outbox.sqlite") and "locked" in line["cause"]
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert rows_in(tmp_path / "outbox.sqlite") == 9742


@needs_root
def test_a_read_only_outbox_file_stops_the_start_with_exit_78(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, 1))
    path = tmp_path / "outbox.sqlite"
    outbox_with_rows(path, 500)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        line = refused(Proc(cfg, tmp_path / "log"))
    finally:
        subprocess.run(["umount", str(path)], check=False)
    assert line["path"] == str(path) and "Read-only file system" in line["cause"]
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert rows_in(path) == 500


def _open_as_nobody(path: Path) -> str:
    """Open the outbox in a forked child that became `nobody`; what happened, as text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)

            async def go() -> None:
                async with Outbox.open(path):
                    pass

            asyncio.run(go())
            msg = "opened"
        except StoreUnusable as exc:
            msg = f"unusable|{exc.path}|{exc.cause}"
        except BaseException as exc:
            msg = f"other|{exc!r}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as out:
        msg = out.read()
    os.waitpid(pid, 0)
    return msg


@needs_root
def test_an_outbox_owned_by_root_is_refused_for_another_user_not_quarantined():
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        store.chmod(0o777)  # the user may create files here: only the outbox is not theirs
        path = store / "outbox.sqlite"
        outbox_with_rows(path, 9742)
        for name in ("outbox.sqlite.seq",):
            (store / name).unlink()  # as after a run of an older version as root
        msg = _open_as_nobody(path)
        assert msg.startswith(f"unusable|{path}|cannot open for writing: Permission denied"), msg
        assert "uid 65534; the file's owner uid 0" in msg
        assert not list(store.glob("*.corrupt-*"))
        assert rows_in(path) == 9742


@needs_root
def test_a_read_only_store_directory_exits_78_without_a_traceback(tmp_path, broker):
    with tmpfs(tmp_path / "store") as store:
        cfg = tmp_path / "gw.toml"
        cfg.write_text(config_text(store, broker.port).replace(f"{store}/run", f"{tmp_path}/run"))
        outbox_with_rows(store / "outbox.sqlite", 100)
        remount(store, "ro")
        try:
            line = refused(Proc(cfg, tmp_path / "log"))
        finally:
            remount(store, "rw")
        assert "Read-only file system" in line["cause"]
        assert rows_in(store / "outbox.sqlite") == 100


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_a_second_daemon_on_one_outbox_refuses_to_start(tmp_path, broker):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    first = Proc(cfg, tmp_path / "log1")
    first.wait_event("gateway running")
    line = refused(Proc(cfg, tmp_path / "log2"))
    assert line["path"] == str(tmp_path / "outbox.sqlite.seq")
    assert f"in use by another process (pid {first.p.pid})" in line["cause"]
    assert first.p.poll() is None  # the first one runs on
    assert first.stop() == 0


@pytest.mark.slow  # several processes
def test_status_reports_a_stopped_daemon_at_once(tmp_path, broker):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    status = tmp_path / "run" / "status.json"
    for sig, said in ((signal.SIGTERM, "stopped"), (signal.SIGKILL, "is gone")):
        status.unlink(missing_ok=True)
        proc = Proc(cfg, tmp_path / "log")
        proc.wait_event("gateway running")
        wait_for_file(status)
        assert gateway("status", "-c", str(cfg)).returncode == 0
        proc.stop(sig)
        res = gateway("status", "-c", str(cfg))
        assert res.returncode == 3, res.stdout
        assert f"pid {proc.p.pid}" in res.stdout and said in res.stdout


def test_daemon_files_are_0600_whatever_the_umask(tmp_path, broker):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    old = os.umask(0)
    try:
        proc = Proc(cfg, tmp_path / "log")
    finally:
        os.umask(old)
    proc.wait_event("gateway running")
    wait_for_file(tmp_path / "run" / "status.json")
    files = [tmp_path / "run" / "status.json", *tmp_path.glob("outbox.sqlite*")]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files}
    assert proc.stop() == 0
    assert {"outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite.seq", "status.json"} <= set(modes)
    assert set(modes.values()) == {"0o600"}, modes


@pytest.mark.slow  # several processes
def test_status_names_quarantined_files_and_salvage_requeues_them_once(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, 1))
    path = tmp_path / "outbox.sqlite"
    outbox_with_rows(path, 5000)
    damage_pages(path, start=20, count=2)  # a few rows' pages; the rest still reads
    outbox_with_rows(path, 10)  # the start that finds the damage quarantines it
    (damaged,) = [
        p for p in tmp_path.glob("outbox.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    ]
    res = gateway("status", "-c", str(cfg))
    assert f"QUARANTINED {damaged}" in res.stdout
    assert f"gateway outbox salvage {damaged}" in res.stdout

    res = gateway("outbox", "salvage", str(damaged), "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, value FROM outbox ORDER BY seq").fetchall()
    salvaged = rows[10:]
    assert 4000 < len(salvaged) < 5000  # the damaged pages' rows are gone, the rest is back
    values = [v for _, v in salvaged]
    assert values == sorted(set(values))  # in their original order, none twice
    assert salvaged[0][0] > 5010  # new seqs, above every seq used before
    again = gateway("outbox", "salvage", str(damaged), "-c", str(cfg))
    assert again.returncode == 0 and "re-queued 0 rows" in again.stdout
    assert rows_in(path) == len(rows)


@pytest.mark.slow  # several processes
def test_salvage_refuses_while_the_daemon_holds_the_outbox(tmp_path, broker):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    damaged = tmp_path / "outbox.sqlite.corrupt-x"
    outbox_with_rows(damaged, 10)
    proc = Proc(cfg, tmp_path / "log")
    proc.wait_event("gateway running")
    res = gateway("outbox", "salvage", str(damaged), "-c", str(cfg))
    assert proc.stop() == 0
    assert res.returncode == 1 and "stop the daemon first" in res.stderr


FLOOD = """
[[buses.devices]]
id = "flood"
interval = 0
points = [ { quantity = "x", pattern = "counter" } ]
"""


def _wait_status(cfg: Path, text: str) -> subprocess.CompletedProcess[str]:
    for _ in range(300):
        res = gateway("status", "-c", str(cfg))
        if text in res.stdout:
            return res
        time.sleep(0.2)
    raise AssertionError(f"status never said {text!r}:\n{res.stdout}")


@pytest.mark.slow
@needs_root
def test_a_disk_filled_while_the_link_was_down_drains_and_shrinks_after_a_restart(tmp_path, broker):
    broker.stop()  # the link is down while the disk fills
    with tmpfs(tmp_path / "store") as store:
        cfg = tmp_path / "gw.toml"
        run = f'runtime_dir = "{tmp_path}/run"'
        text = config_text(store, broker.port).replace(f'runtime_dir = "{store}/run"', run)
        cfg.write_text(text + FLOOD)
        proc = Proc(cfg, tmp_path / "log1")
        proc.wait_event("outbox cannot write (disk full?); buffering in memory")
        # status.json is in the runtime directory: the full data disk does not stop it.
        res = _wait_status(cfg, "DISK FULL")
        assert res.returncode == 0, res.stdout
        assert proc.stop() == 0
        (lost,) = [e for e in proc.events() if e["event"].startswith("outbox closing with rows")]
        assert sum(lost["lost"].values()) > 0  # the memory buffer's rows, counted and logged
        path = store / "outbox.sqlite"
        on_disk, full_size = rows_in(path), path.stat().st_size
        assert on_disk > 5000

        broker.start()
        cfg.write_text(text)  # the flood is over; the counter goes on
        proc = Proc(cfg, tmp_path / "log2")
        for _ in range(600):
            if rows_in(path) < on_disk / 10 and path.stat().st_size < full_size / 4:
                break
            time.sleep(0.1)
        assert proc.stop() == 0
        assert rows_in(path) < on_disk / 10
        assert path.stat().st_size < full_size / 4


@pytest.mark.slow
async def test_alert_state_and_mail_log_are_0600_whatever_the_umask(tmp_path):
    from drivers.modbus.sim import Simulator
    from tests.smtp_peer import MailSink
    from tests.test_alert_daemon import _config, _relay_unit, _until

    mail = await MailSink().start()
    try:
        async with Simulator({2: _relay_unit()}, "tcp:127.0.0.1:0") as sim:
            path = tmp_path / "gateway.toml"
            path.write_text(_config(tmp_path, sim, mail.port, ["set", "triggered"] + ["set"] * 99))
            old = os.umask(0)
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "gateway",
                    "run",
                    "-c",
                    str(path),
                    cwd=ROOT,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            finally:
                os.umask(old)
            state, sent = tmp_path / "alert-state.json", tmp_path / "mail-sent.log"
            try:
                await _until(lambda: state.exists() and sent.exists(), timeout=30)
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        await mail.stop()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert oct(sent.stat().st_mode & 0o777) == "0o600"
