"""`gateway demo` end to end: its own broker, the simulated field, live output, clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # the whole demo as a process, ~9 s


def test_demo_shows_the_field_reaching_the_platform(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--seconds", "8", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("platform <- ")]
    topics = {ln.split()[2] for ln in lines}
    for device in ("paddy-01", "buoy-01", "trap-01"):
        assert f"/json/demo/{device}/attrs" in topics, res.stdout
    paddy = next(ln for ln in lines if "/json/demo/paddy-01/attrs" in ln)
    body = json.loads(paddy.split("  ", 1)[1])
    first = body[0] if isinstance(body, list) else body
    assert 3.0 <= first["wl"] <= 5.5 and first["TimeInstant"].endswith("Z")
    assert res.stdout.rstrip().endswith("demo: stopped")
    assert "platform <- gateway/demo-field/status  offline" in res.stdout
