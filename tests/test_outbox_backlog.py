"""`gateway outbox export | import | purge`: the backlog by hand. Real processes, real outbox
files, a real daemon beside the export and a real broker behind the importing box."""

from __future__ import annotations

import csv
import json
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.clock import iso
from gateway.outbox.database import SCHEMA
from gateway.outbox.export import FIELDS
from tests.test_daemon import ROOT, Proc, config_text

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def gateway(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=stdin,
    )


def filled(path: Path, n: int, *, lane: int = 2, ts0: float = T0) -> None:
    """An outbox file with `n` rows of `lane`, one a second from `ts0`, written as the daemon
    would have left them (its schema; seq 1..n; a sub-device every tenth row)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
        "INSERT INTO outbox(seq, lane, device, quantity, value, unit, ts, flags, size, parent) "
        "SELECT i, ?, CASE WHEN i % 10 = 0 THEN 'traps-' || i ELSE 'counter' END, 'n', "
        "i * 0.5, 'cm', ? + i, 1, 60, CASE WHEN i % 10 = 0 THEN 'traps' END FROM s",
        (n, lane, ts0),
    )
    db.execute("INSERT INTO meta VALUES ('seq_hwm', ?)", (n,))
    db.commit()
    db.close()


def setup(tmp_path: Path, port: int = 1, gw: str = "gw1") -> Path:
    tmp_path.mkdir(exist_ok=True)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, port).replace('id = "gw1"', f'id = "{gw}"'))
    return cfg


def rows_of(path: Path, sql: str = "SELECT count(*) FROM outbox") -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(sql).fetchone()[0])


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_export_writes_every_field_filters_by_lane_and_time_and_takes_nothing(tmp_path):
    cfg = setup(tmp_path)
    filled(tmp_path / "outbox.sqlite", 100)
    out = tmp_path / "x.jsonl"
    since, until = iso(T0 + 11), iso(T0 + 21)
    res = gateway(
        "outbox", "export", "-c", str(cfg), "--since", since, "--until", until, "-o", str(out)
    )
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in recs] == list(range(11, 21))  # [since, until)
    assert list(recs[0]) == list(FIELDS)
    assert recs[0] == {
        "gateway": "gw1", "seq": 11, "lane": "telemetry", "device": "counter", "parent": None,
        "quantity": "n", "value": 5.5, "unit": "cm", "time": iso(T0 + 11), "synced": True,
        "plausible": True,
    }  # fmt: skip
    assert recs[-1]["device"] == "traps-20" and recs[-1]["parent"] == "traps"
    res = gateway("outbox", "export", "-c", str(cfg), "--lane", "alert")
    assert res.returncode == 0 and res.stdout == ""
    res = gateway("outbox", "export", "-c", str(cfg), "--format", "csv")
    table = list(csv.reader(res.stdout.splitlines()))
    assert tuple(table[0]) == FIELDS and len(table) == 101
    assert table[10] == ["gw1", "10", "telemetry", "traps-10", "traps", "n", "5.0", "cm",
                         iso(T0 + 10), "true", "true"]  # fmt: skip
    assert rows_of(tmp_path / "outbox.sqlite") == 100  # non-destructive
    bad = gateway("outbox", "export", "-c", str(cfg), "--since", "last tuesday")
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr


@pytest.mark.slow  # several processes
def test_export_beside_a_running_daemon_then_import_forwards_once_through_another_box(
    tmp_path, broker, platform
):
    cfg_a = setup(tmp_path / "a")  # port 1: the link is dead, the backlog grows
    proc = Proc(cfg_a, tmp_path / "a.log")
    proc.wait_event("gateway running")
    store_a = tmp_path / "a" / "outbox.sqlite"
    proc.wait_for(lambda _: store_a.exists() and rows_of(store_a) >= 500, 30, "a backlog")
    dump = tmp_path / "backlog.csv"
    res = gateway("outbox", "export", "-c", str(cfg_a), "--format", "csv", "-o", str(dump))
    assert proc.p.poll() is None  # the daemon kept running, and kept writing
    purge = ["outbox", "purge", "--lane", "telemetry", "--before", iso(T0 * 2), "--yes"]
    locked = gateway(*purge, "-c", str(cfg_a))
    assert locked.returncode == 1 and "stop the daemon first" in locked.stderr
    assert res.returncode == 0, res.stderr
    exported = list(csv.DictReader(dump.open()))
    assert len(exported) >= 500 and {r["gateway"] for r in exported} == {"gw1"}
    assert proc.stop() == 0
    assert rows_of(store_a) >= len(exported)  # nothing was taken out of the queue

    cfg_b = setup(tmp_path / "b", broker.port, "gw2")
    cfg_b.write_text(cfg_b.read_text().replace('id = "counter"', 'id = "local"'))
    proc_b = Proc(cfg_b, tmp_path / "b.log")
    proc_b.wait_event("gateway running")
    locked = gateway("outbox", "import", str(dump), "-c", str(cfg_b))
    assert locked.returncode == 1 and "stop the daemon first" in locked.stderr
    assert proc_b.stop() == 0
    first = gateway("outbox", "import", str(dump), "-c", str(cfg_b))
    assert first.returncode == 0 and f"queued {len(exported)} rows" in first.stdout, first.stderr
    again = gateway("outbox", "import", str(dump), "-c", str(cfg_b))
    assert again.returncode == 0 and "queued 0 rows" in again.stdout
    assert f"{len(exported)} taken by an earlier import" in again.stdout
    store_b = tmp_path / "b" / "outbox.sqlite"
    origin = "SELECT count(*) FROM imported WHERE gateway = 'gw1'"
    assert rows_of(store_b, origin) == len(exported)

    proc_b = Proc(cfg_b, tmp_path / "b2.log")

    def forwarded() -> list[dict]:
        return [
            item
            for m in platform.messages
            if m.topic.endswith("/gw2/counter")
            for item in json.loads(m.payload)
        ]

    platform.wait_for(lambda _: len(forwarded()) >= len(exported), timeout=60)
    assert proc_b.stop() == 0
    items = forwarded()
    values = [item["value"] for item in items]
    assert sorted(values) == sorted(float(r["value"]) for r in exported)  # each once
    # Each carries the box and the seq that first stamped it, for the consumer's de-dup.
    origins = sorted((i["origin"]["gateway"], i["origin"]["seq"]) for i in items)
    assert origins == sorted(("gw1", int(r["seq"])) for r in exported)


def test_import_refuses_a_damaged_file_and_queues_nothing(tmp_path):
    cfg = setup(tmp_path)
    good = {"gateway": "gw9", "seq": 1, "lane": "telemetry", "device": "d", "parent": None,
            "quantity": "n", "value": 1.0, "unit": "", "time": iso(T0), "synced": True,
            "plausible": True}  # fmt: skip
    dump = tmp_path / "x.jsonl"
    lines = [json.dumps({**good, "seq": i}) for i in range(1, 4)]
    lines.append(json.dumps({**good, "seq": 4, "lane": "bogus"}))
    dump.write_text("\n".join(lines) + "\n")
    res = gateway("outbox", "import", str(dump), "-c", str(cfg))
    assert res.returncode == 1 and "line 4: lane" in res.stderr and "nothing queued" in res.stderr
    dump.write_text("{not json\n")
    res = gateway("outbox", "import", str(dump), "-c", str(cfg))
    assert res.returncode == 1 and "nothing queued" in res.stderr
    assert not (tmp_path / "outbox.sqlite").exists() or rows_of(tmp_path / "outbox.sqlite") == 0


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_purge_needs_yes_off_a_terminal_and_counts_its_rows_as_drops(tmp_path):
    cfg = setup(tmp_path)
    store = tmp_path / "outbox.sqlite"
    filled(store, 100)
    before = iso(T0 + 41)
    res = gateway("outbox", "purge", "--lane", "telemetry", "--before", before, "-c", str(cfg))
    assert res.returncode == 2 and "--yes" in res.stderr
    assert rows_of(store) == 100
    res = gateway(
        "outbox", "purge", "--lane", "telemetry", "--before", before, "--yes", "-c", str(cfg)
    )
    assert res.returncode == 0 and "purged 40 telemetry rows" in res.stdout, res.stderr
    assert "outbox purged by hand" in res.stdout + res.stderr
    assert rows_of(store) == 60
    assert rows_of(store, "SELECT min(seq) FROM outbox") == 41
    assert rows_of(store, "SELECT value FROM meta WHERE key = 'dropped_telemetry'") == 40
    status = gateway("status", "-c", str(cfg))
    assert "dropped  telemetry 40" in status.stdout, status.stdout


def test_purge_on_a_terminal_asks_and_a_no_deletes_nothing(tmp_path):
    cfg = setup(tmp_path)
    store = tmp_path / "outbox.sqlite"
    filled(store, 10)
    main, child = pty.openpty()
    try:
        os.write(main, b"n\n")
        args = ["outbox", "purge", "--lane", "telemetry", "--before", iso(T0 + 100)]
        res = gateway(*args, "-c", str(cfg), stdin=child)
    finally:
        os.close(main)
        os.close(child)
    assert res.returncode == 0, res.stderr
    assert "delete 10 telemetry rows" in res.stdout  # input() prompts on stdout
    assert "nothing deleted" in res.stdout
    assert rows_of(store) == 10


@pytest.mark.slow  # a million rows
def test_export_of_a_million_rows_streams_in_constant_memory(tmp_path):
    cfg = setup(tmp_path)
    store = tmp_path / "outbox.sqlite"
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )

    def peak_kib() -> int:
        argv = [sys.executable, "-m", "gateway", "outbox", "export", "-c", str(cfg)]
        res = subprocess.run(
            [sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        return int(res.stdout)

    filled(store, 10_000)
    small = peak_kib()
    store.unlink()
    filled(store, 1_000_000)
    big = peak_kib()
    # A million rows held in memory would be hundreds of MB; streaming costs nothing per row.
    assert big - small < 20 * 1024, (small, big)


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_the_progress_bar_goes_to_stderr_on_a_terminal_only(tmp_path):
    cfg = setup(tmp_path)
    filled(tmp_path / "outbox.sqlite", 25_000)
    plain = gateway("outbox", "export", "-c", str(cfg))
    assert plain.stderr.strip() == f"exported 25000 rows from {tmp_path / 'outbox.sqlite'}"
    main, child = pty.openpty()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "gateway", "outbox", "export", "-c", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=child,
            timeout=120,
        )
        shown = os.read(main, 65536).decode()
    finally:
        os.close(main)
        os.close(child)
    assert res.returncode == 0
    assert "25000/25000 rows" in shown and "\r[" in shown
    assert res.stdout.count(b"\n") == 25_000  # the data is unchanged
