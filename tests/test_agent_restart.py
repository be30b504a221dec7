"""A broker restart in the middle of a stream, against the real FIWARE IoT Agent: the agent
has no session on the broker (QoS 0, a new client id at every connect), so what the gateway
publishes before it has re-subscribed is lost although PUBACKed. The uplink's resume hold
(gateway.uplink.resume) waits `resume_delay` after a connect on which the broker had lost our
session; with the default every reading, and the alert raised in the window, arrives."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from gateway.cli import status as status_cli
from gateway.clock import FixedClock
from gateway.config import loader
from gateway.config.loader import UplinkConfig
from gateway.errors import ConfigError
from gateway.notify import Notifier
from gateway.outbox.store import Outbox
from gateway.report import Report
from gateway.runtime import build_runtime
from tests.agent_races import restart_midstream
from tests.agent_setup import fresh_apikey, running_uplink, telemetry, until, uplink_config
from tests.alert_setup import config_text, parse
from tests.iotagent import City


@pytest.mark.slow  # the default hold is 10 s
async def test_a_broker_restart_mid_stream_loses_nothing_with_the_default_hold(
    city: City, tmp_path, captured_logs, log
) -> None:
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        got, uplink = await restart_midstream(city, outbox, log)
    print(
        f"broker restart mid-stream, resume_delay {UplinkConfig.resume_delay:g} s (default): {got}"
    )
    assert uplink.cfg.resume_delay == UplinkConfig.resume_delay
    assert got.holds == 1, "the reconnect found the session lost and held"
    assert got.sent > 100
    assert got.lost == 0, f"{got.lost} of {got.sent} readings never reached the platform"
    assert got.delivered == got.sent
    # At least once: only what was in flight when the broker went may come twice.
    assert got.duplicates <= got.inflight
    assert got.alerts_delivered == got.alerts_sent == 1, "the alert of the window arrived"
    events = [e["event"] for e in captured_logs]
    held = [e for e in events if e.startswith("uplink holding its backlog")]
    assert len(held) == 1 and "uplink hold over; draining" in events
    assert events.index(held[0]) < events.index("uplink hold over; draining")
    assert uplink.stats.holding_until is None  # over, in the stats too


async def test_the_first_connect_of_a_fresh_uplink_does_not_hold(city: City, tmp_path, log) -> None:
    # A broker that never saw our client id answers session-present 0 too: no sign of a
    # restart when nothing failed before, so the backlog goes out at once.
    apikey = fresh_apikey()
    city.agent.provision_group(apikey)
    entity = city.agent.provision_device(
        "fresh-1",
        apikey,
        attributes=[{"object_id": "water_level", "name": "waterLevel", "type": "Number"}],
    )
    cfg = uplink_config(city, apikey, resume_delay=3600.0)
    async with Outbox.open(tmp_path / "o.sqlite", log=log) as outbox:
        await outbox.append(telemetry(outbox, "fresh-1", 5))
        async with running_uplink(cfg, outbox, log) as uplink:
            await until(lambda: len(city.cb.updates_of(entity)) == 5)
            assert uplink.stats.resume_holds == 0 and uplink.stats.holding_until is None


async def test_the_status_report_shows_a_hold(tmp_path, log) -> None:
    cfg = parse(config_text(store=str(tmp_path / "o.sqlite")))
    clock = FixedClock(1.8e9)
    async with contextlib.AsyncExitStack() as exits:
        rt = await build_runtime(exits, cfg, clock=clock, log=log, hub=None, commands={})
        report = Report(rt, clock=clock, notifier=Notifier(""))
        assert "holding" not in report.line()
        stats = rt.uplink.stats
        key = report._key()
        stats.connected, stats.holding_until, stats.resume_holds = True, time.time() + 9, 1
        assert report._key() != key  # reported at once, not at the next refresh
        assert report.line().startswith("uplink up, holding the backlog")
        snap = report.snapshot()["uplink"]
        assert isinstance(snap, dict)
        assert snap["holding_until"] == stats.holding_until and snap["resume_holds"] == 1
        # `gateway status` says it in words, from the file the daemon writes.
        status_file = tmp_path / "status.json"
        status_file.write_text(json.dumps(report.snapshot()))
        daemon = status_cli._daemon(status_file, time.time())
        daemon["uplink"].update(host="broker", port=1883)  # `report` adds these from the config
        text = "\n".join(status_cli._render_daemon(daemon, time.time()))
        assert "holding the backlog for" in text and "lost our session" in text


def test_resume_delay_is_read_from_the_uplink_section_and_checked() -> None:
    base = '[gateway]\nid = "gw1"\n[uplink]\n'
    assert loader.parse(base).uplink.resume_delay == 10.0
    assert loader.parse(base + "resume_delay = 2.5\n").uplink.resume_delay == 2.5
    assert loader.parse(base + "resume_delay = 0\n").uplink.resume_delay == 0.0  # off
    with pytest.raises(ConfigError) as info:
        loader.parse(base + "resume_delay = -1\n")
    assert any("uplink.resume_delay" in str(p) for p in info.value.problems)
