"""Dead letters (issue 10, section 1): a row the uplink can never publish (a topic with an MQTT
wildcard, a value the format cannot encode, too large alone) leaves the queue for the
`dead_letter` table with its reason and time, is counted (OutboxStats, `gateway status`), and
never blocks the rows behind it. Real mosquitto, real outbox files, the daemon as a process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest

from gateway.model import Lane, Reading
from gateway.outbox import inspect
from gateway.outbox.store import Outbox
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink
from tests.test_daemon import ROOT, Proc, config_text, delivered_seqs
from tests.test_uplink import BASE, running, wait_until


def _bad_and_good(ob: Outbox) -> tuple[list[Reading], list[Reading]]:
    s = list(ob.allocate(5))
    alert = json.dumps({"id": "trap:evil/#:1", "test": True})
    bad = [
        # alert-test made this row on main: `/json/key/evil/#/attrs` is no topic to publish on
        Reading(s[0], "evil/#", "alert", alert, "", 1.8e9, True, Lane.ALERT),
        Reading(s[1], "d1", "note", "x" * 1000, "", 1.8e9, True),  # too large even alone
        # a BLOB (a hand-edited file): no payload format can encode bytes
        Reading(s[2], "d2", "water_level", b"\x00\xff", "cm", 1.8e9, True),  # type: ignore[arg-type]
    ]
    good = [Reading(s[i], "d3", "water_level", 4.0 + i, "cm", 1.8e9 + i, True) for i in (3, 4)]
    return bad, good


async def test_unsendable_rows_go_to_dead_letters_and_the_rest_is_delivered(
    tmp_path, broker, platform, log
):
    cfg = replace(BASE, port=broker.port, format="fiware-json", max_payload_bytes=300)
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        bad, good = _bad_and_good(ob)
        await ob.append(bad + good)
        up = Uplink(cfg, "gw1", ob, CommandRouter((), log=log), log=log)
        async with running(up):
            await wait_until(lambda: ob.rows == 0)
            assert up.stats.dead_letters == 3 and up.stats.oversized == 1
        assert ob.stats().dead_letters == 3
    await platform.wait(lambda ms: len(platform.on("/json/key/d3/attrs")) >= 1)
    delivered = [json.loads(m.payload) for m in platform.on("/json/key/d3/attrs")]
    assert [o["wl" if "wl" in o else "water_level"] for o in _flat(delivered)] == [7.0, 8.0]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, device, value, reason, at FROM dead_letter ORDER BY seq")
        dead = list(rows)
    assert [(d[0], d[1]) for d in dead] == [(r.seq, r.device) for r in bad]
    assert "wildcard" in dead[0][3]
    assert dead[1][3].startswith("larger than max_payload_bytes")
    assert dead[2][3].startswith("cannot encode: TypeError") and dead[2][2] == b"\x00\xff"
    assert all(abs(d[4] - dead[0][4]) < 60 and d[4] > 1.7e9 for d in dead)
    # counted for `gateway status`, also after a restart
    summary = inspect.summary(path)
    assert summary is not None and summary.dead_letters == 3 and summary.rows == 0
    async with Outbox.open(path) as ob:
        assert ob.stats().dead_letters == 3


def _flat(objs: list) -> list[dict]:  # type: ignore[type-arg]
    out: list[dict] = []  # type: ignore[type-arg]
    for o in objs:
        out += o if isinstance(o, list) else [o]
    return out


def test_a_file_from_before_dead_letters_reads_as_none_and_gets_the_table(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE outbox(seq INTEGER PRIMARY KEY, lane INTEGER NOT NULL,"
            " device TEXT NOT NULL, quantity TEXT NOT NULL, value, unit TEXT NOT NULL,"
            " ts REAL NOT NULL, flags INTEGER NOT NULL, size INTEGER NOT NULL);"
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        )
    summary = inspect.summary(path)
    assert summary is not None and summary.dead_letters == 0

    async def reopen() -> int:
        async with Outbox.open(path) as ob:
            return ob.stats().dead_letters

    assert asyncio.run(reopen()) == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM dead_letter").fetchone() == (0,)


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_a_daemon_starting_on_a_poisoned_outbox_delivers_the_rest(tmp_path, broker, platform):
    """On main an alert row with a wildcard topic crashed the uplink at every start, for
    ever, until someone edited the database by hand. `gateway status` shows the count."""
    async with Outbox.open(tmp_path / "outbox.sqlite") as ob:
        bad, _ = _bad_and_good(ob)
        await ob.append(bad[:1])
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    proc = Proc(cfg, tmp_path / "log")
    try:
        proc.wait_event("unsendable rows moved to dead letters")
        platform.wait_for(lambda ms: len(delivered_seqs(platform)) > 100)
        status = subprocess.run(
            [sys.executable, "-m", "gateway", "status", "-c", str(cfg)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "dead letters 1" in status.stdout, status.stdout
        assert proc.p.poll() is None
    finally:
        assert proc.stop() == 0
    (event,) = [e for e in proc.events() if e["event"] == "unsendable rows moved to dead letters"]
    assert "wildcard" in event["reason"] and event["seqs"] == [bad[0].seq]
