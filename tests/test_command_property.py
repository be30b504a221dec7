"""Random command payloads at a running daemon through a real mosquitto (issue 10, section 1):
random bytes, deep JSON, huge names, wrong types, non-finite numbers, lone surrogates, payloads
over the size cap. After every one the daemon must still run and have answered it; at the end
telemetry must still flow and the log must hold JSON lines only (no plain traceback)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.uplink import orion
from tests.test_daemon import Proc, config_text, delivered_seqs

CMD, CMDEXE = "/gateway/gw1/cmd", "/json/gateway/gw1/cmdexe"
NAMES = ["ping", "siren", "alert-test", "relay", "reload", "fly", ""]
ALERTS = """
[[alerts.rules]]
name = "trap"
kind = "event"
quantity = "n"
equals = -1
"""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
payloads = st.one_of(
    st.binary(max_size=600),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"ping":' + b"{" * n + b"}" * n + b"}"),
    st.integers(60, 200_000).map(lambda n: json.dumps({"x" * n: 1}).encode()),
    st.dictionaries(st.sampled_from(NAMES), json_values, min_size=1, max_size=4).map(
        lambda d: json.dumps(d).encode()
    ),
    st.builds(
        lambda name, s: json.dumps({name: s}).encode(),
        st.sampled_from(NAMES) | surrogates,
        surrogates,
    ),
    st.sampled_from(
        [
            b'{"siren": {"seconds": "inf"}}',
            b'{"siren": {"seconds": 1e308}}',
            b'{"siren": "1e999"}',
            b'{"alert-test": {"rule": "trap", "device": "evil/#"}}',
            b'{"alert-test": {"rule": "trap", "device": "counter/attrs/x"}}',
            b'{"alert-test": {"rule": "trap", "device": 123}}',
            b'{"\\ud800": 1}',
        ]
    ),
)


@pytest.mark.slow  # ~20 s: 120 examples, each answered before the next
def test_random_commands_never_stop_the_daemon(tmp_path, broker, platform):
    text = config_text(tmp_path, broker.port, devices=ALERTS).replace(
        "[uplink]\n", '[uplink]\ncommands = ["ping", "siren", "alert-test"]\n', 1
    )
    cfg = tmp_path / "gw.toml"
    cfg.write_text(text)
    proc = Proc(cfg, tmp_path / "log")
    sent = 0
    try:
        proc.wait_event("gateway running")
        platform.wait_for(lambda ms: len(delivered_seqs(platform)) > 10)

        @settings(
            max_examples=120,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(payloads)
        def one(payload: bytes) -> None:
            nonlocal sent
            sent += 1
            platform.publish(CMD, payload)
            platform.wait_for(lambda ms: len(platform.on(CMDEXE)) >= sent, timeout=30)
            assert proc.p.poll() is None, "the daemon stopped"

        one()
        before = len(delivered_seqs(platform))
        platform.wait_for(lambda ms: len(delivered_seqs(platform)) > before + 100)
        assert proc.p.poll() is None
    finally:
        assert proc.stop() == 0
    assert len(platform.on(CMDEXE)) == sent  # exactly one answer each
    for answer in platform.on(CMDEXE):
        body = json.loads(answer.payload)  # every answer is valid JSON text
        # ... that Orion takes (else <cmd>_status stays PENDING) and reads at a glance
        assert orion.is_safe(body), body
        assert all(str(v).startswith(("OK", "ERROR: ")) for v in body.values()), body
    lines = (tmp_path / "log").read_text().splitlines()
    assert all(line.startswith("{") for line in lines), [
        line for line in lines if not line.startswith("{")
    ][:5]
